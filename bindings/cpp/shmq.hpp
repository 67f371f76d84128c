// shmq.hpp: a header-only C++17 wrapper over the shmq C API (shmq.h).
//
// - RAII: Queue closes its handle, Reservation aborts unless committed,
//   Message gives the outcome you chose (OnExit) when it leaves scope
//   without one.
// - No exceptions by default: calls return Status or Result<T>. Define
//   SHMQ_CPP_EXCEPTIONS before including this header to get
//   Result<T>::value() (and shmq::check) throwing shmq::Exception instead of
//   aborting on a failed result.
// - std::string_view for payloads; std::span<const std::byte> as well under
//   C++20.
// - Thread safety: as in the C API, a Queue (and the Messages and
//   Reservations it hands out) is used by one thread at a time; open one
//   Queue per thread. Messages and Reservations must not outlive their Queue.
//
// Link with -lshmq (pkg-config --cflags --libs shmq).
#ifndef SHMQ_HPP
#define SHMQ_HPP

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#if __cplusplus >= 202002L
#include <span>
#endif
#ifdef SHMQ_CPP_EXCEPTIONS
#include <stdexcept>
#endif

#include "shmq.h"

namespace shmq {

/// The status of a call; the same values as shmq_status.
enum class Status : int {
    Ok = SHMQ_OK,
    Full = SHMQ_FULL,
    Empty = SHMQ_EMPTY,
    Timeout = SHMQ_TIMEOUT,
    TooLarge = SHMQ_TOO_LARGE,
    LeaseLost = SHMQ_LEASE_LOST,
    Abandoned = SHMQ_ABANDONED,
    KeysFull = SHMQ_KEYS_FULL,
    Stale = SHMQ_STALE,
    InvalidArgument = SHMQ_INVALID_ARGUMENT,
    NotFound = SHMQ_NOT_FOUND,
    Exists = SHMQ_EXISTS,
    Incompatible = SHMQ_INCOMPATIBLE,
    Corrupt = SHMQ_CORRUPT,
    Permission = SHMQ_PERMISSION,
    Io = SHMQ_IO,
    Internal = SHMQ_INTERNAL,
    Closed = SHMQ_CLOSED,
};

/// "SHMQ_FULL" and so on.
inline const char *status_name(Status s) noexcept {
    return shmq_status_name(static_cast<shmq_status>(s));
}

/// How long a call may wait: 0 = try once, negative = forever.
using Timeout = std::chrono::nanoseconds;
inline constexpr Timeout try_once{0};
inline constexpr Timeout forever{-1};

/// An error: its status and the detail from shmq_last_error() (the file,
/// the operation and the cause), taken on the thread that failed.
struct Error {
    Status status = Status::Ok;
    std::string message;

    static Error last(Status s) { return Error{s, shmq_last_error()}; }
};

#ifdef SHMQ_CPP_EXCEPTIONS
/// Thrown by Result<T>::value() and check() when SHMQ_CPP_EXCEPTIONS is set.
class Exception : public std::runtime_error {
  public:
    explicit Exception(Error e) : std::runtime_error(e.message), error_(std::move(e)) {}
    Status status() const noexcept { return error_.status; }
    const Error &error() const noexcept { return error_; }

  private:
    Error error_;
};
#endif

namespace detail {
[[noreturn]] inline void fail(const Error &e) {
#ifdef SHMQ_CPP_EXCEPTIONS
    throw Exception(e);
#else
    (void)e;
    std::abort();
#endif
}
inline Status st(shmq_status s) noexcept { return static_cast<Status>(s); }
} // namespace detail

/// With SHMQ_CPP_EXCEPTIONS: throws shmq::Exception unless `s` is Ok.
#ifdef SHMQ_CPP_EXCEPTIONS
inline void check(Status s) {
    if (s != Status::Ok)
        throw Exception(Error::last(s));
}
#endif

/// A value or an error. value() on an error throws (SHMQ_CPP_EXCEPTIONS) or
/// aborts; test ok() first.
template <class T> class [[nodiscard]] Result {
  public:
    Result(T v) : value_(std::move(v)) {}
    Result(Error e) : error_(std::move(e)) {}

    bool ok() const noexcept { return value_.has_value(); }
    explicit operator bool() const noexcept { return ok(); }
    Status status() const noexcept { return ok() ? Status::Ok : error_.status; }
    const Error &error() const noexcept { return error_; }

    T &value() & {
        if (!ok())
            detail::fail(error_);
        return *value_;
    }
    T &&value() && {
        if (!ok())
            detail::fail(error_);
        return std::move(*value_);
    }
    T *operator->() { return &value(); }
    T &operator*() & { return value(); }

  private:
    std::optional<T> value_;
    Error error_;
};

/// Options of a new queue (shmq_options with its defaults).
struct Options {
    shmq_options c;
    Options() { shmq_options_init(&c); }
    Options &capacity(uint64_t n) { c.capacity = n; return *this; }
    Options &max_message_size(uint32_t n) { c.max_message_size = n; return *this; }
    Options &key_capacity(uint64_t n) { c.key_capacity = n; return *this; }
    Options &lease(std::chrono::nanoseconds d) { c.lease_ns = static_cast<uint64_t>(d.count()); return *this; }
    Options &max_deliveries(uint32_t n) { c.max_deliveries = n; return *this; }
    Options &latest_only(bool on) {
        c.flags = on ? (c.flags | SHMQ_FLAG_LATEST_ONLY) : (c.flags & ~uint32_t(SHMQ_FLAG_LATEST_ONLY));
        return *this;
    }
    Options &mode(uint32_t m) { c.mode = m; return *this; }
    /// A queue shared with a group: mode 0660, given to `gid`.
    Options &group_shared(uint32_t gid) {
        c.mode = SHMQ_MODE_GROUP_SHARED;
        c.flags |= SHMQ_FLAG_SET_GROUP;
        c.group = gid;
        return *this;
    }
    Options &reservation_timeout(std::chrono::nanoseconds d) {
        c.reservation_timeout_ns = static_cast<uint64_t>(d.count());
        return *this;
    }
};

/// How an existing file is opened (shmq_open_options): as a participant,
/// for inspection or read-only, and which owners and modes are accepted.
struct OpenOptions {
    shmq_open_options c;
    OpenOptions() { shmq_open_options_init(&c); }
    /// Maps the file read-only; every change returns Status::Permission.
    OpenOptions &read_only() { c.access = SHMQ_ACCESS_READ_ONLY; return *this; }
    OpenOptions &inspect() { c.access = SHMQ_ACCESS_INSPECT; return *this; }
    /// Accept a file its group may write (mode 0660).
    OpenOptions &group_shared(bool on = true) { return flag(SHMQ_OPEN_GROUP_SHARED, on); }
    /// Accept any owner and mode (still a regular file).
    OpenOptions &trust_any_owner(bool on = true) { return flag(SHMQ_OPEN_TRUST_ANY_OWNER, on); }

  private:
    OpenOptions &flag(uint32_t f, bool on) {
        c.flags = on ? (c.flags | f) : (c.flags & ~f);
        return *this;
    }
};

/// Options of one send.
struct SendOptions {
    uint64_t key = 0;
    uint64_t version = 0;
    Timeout timeout = try_once;
    std::chrono::nanoseconds delay{0};
};

/// What a send did.
struct Sent {
    uint64_t position = 0;
    uint64_t version = 0;
};

/// What a Message does when it leaves scope without an outcome.
enum class OnExit {
    /// Nothing: it stays claimed until its lease ends (or the Queue closes).
    Keep,
    /// Ack it (done).
    Ack,
    /// Nack it (redelivered at once; counts as a failed delivery).
    Nack,
};

class Queue;

/// A claimed message. Movable, not copyable. Give one outcome (ack, nack,
/// reject); the destructor gives the OnExit outcome if none was given.
class Message {
  public:
    Message(Message &&o) noexcept : q_(o.q_), m_(o.m_), on_exit_(o.on_exit_), done_(o.done_) {
        o.done_ = true;
    }
    Message &operator=(Message &&o) noexcept {
        if (this != &o) {
            finish();
            q_ = o.q_;
            m_ = o.m_;
            on_exit_ = o.on_exit_;
            done_ = o.done_;
            o.done_ = true;
        }
        return *this;
    }
    Message(const Message &) = delete;
    Message &operator=(const Message &) = delete;
    ~Message() { finish(); }

    /// The payload in place (shared mapping, or the copy buffer). Valid while
    /// the claim is held.
    std::string_view data() const noexcept {
        return std::string_view(reinterpret_cast<const char *>(m_.data), m_.len);
    }
#if __cplusplus >= 202002L
    std::span<const std::byte> bytes() const noexcept {
        return std::span<const std::byte>(reinterpret_cast<const std::byte *>(m_.data), m_.len);
    }
#endif
    /// A private copy, checked for tearing (LeaseLost if the claim is gone).
    Result<std::string> copy() const {
        std::string s(m_.len, '\0');
        size_t n = 0;
        shmq_status r = shmq_read(q_, &m_, s.data(), s.size(), &n);
        if (r != SHMQ_OK)
            return Error::last(detail::st(r));
        s.resize(n);
        return s;
    }
    size_t size() const noexcept { return m_.len; }
    uint64_t key() const noexcept { return m_.key; }
    uint64_t version() const noexcept { return m_.version; }
    uint32_t deliveries() const noexcept { return m_.deliveries; }
    uint64_t enqueued_ns() const noexcept { return m_.enqueued_ns; }
    uint64_t position() const noexcept { return m_.position; }
    uint64_t token() const noexcept { return m_.token; }
    /// The id of the handle (Queue) that claimed it; another Queue refuses it.
    uint64_t handle_id() const noexcept { return m_.handle_id; }
    /// The C message, whole (copy it whole: its size, handle_id and reserved
    /// words are checked by every call that takes it).
    const shmq_message &raw() const noexcept { return m_; }
    /// Whether an outcome was given.
    bool settled() const noexcept { return done_; }
    /// Chooses what happens at scope exit without an outcome.
    void on_exit(OnExit e) noexcept { on_exit_ = e; }

    /// Done: the message is deleted.
    Status ack() noexcept { return settle(shmq_ack(q_, &m_)); }
    /// Try again after `delay` (a failed delivery).
    Status nack(std::chrono::nanoseconds delay = std::chrono::nanoseconds(0)) noexcept {
        return settle(shmq_nack(q_, &m_, static_cast<uint64_t>(delay.count())));
    }
    /// Give up: to the dead letters with `reason`.
    Status reject(const std::string &reason) noexcept {
        return settle(shmq_reject(q_, &m_, reason.c_str()));
    }
    /// Still working: the lease now ends `lease` from now.
    Status extend(std::chrono::nanoseconds lease) noexcept {
        return detail::st(shmq_extend_lease(q_, &m_, static_cast<uint64_t>(lease.count())));
    }

  private:
    friend class Queue;
    Message(shmq_queue *q, const shmq_message &m, OnExit e) noexcept : q_(q), m_(m), on_exit_(e) {}

    Status settle(shmq_status r) noexcept {
        // Whatever the answer, scope exit gives no second outcome.
        done_ = true;
        return detail::st(r);
    }
    void finish() noexcept {
        if (done_)
            return;
        done_ = true;
        if (on_exit_ == OnExit::Ack)
            (void)shmq_ack(q_, &m_);
        else if (on_exit_ == OnExit::Nack)
            (void)shmq_nack(q_, &m_, 0);
    }

    shmq_queue *q_ = nullptr;
    shmq_message m_{};
    OnExit on_exit_ = OnExit::Nack;
    bool done_ = false;
};

/// A slot reserved for a zero-copy send: write to data(), then commit().
/// Aborted by the destructor unless committed or aborted.
class Reservation {
  public:
    Reservation(Reservation &&o) noexcept : q_(o.q_), r_(o.r_), done_(o.done_) { o.done_ = true; }
    Reservation &operator=(Reservation &&o) noexcept {
        if (this != &o) {
            finish();
            q_ = o.q_;
            r_ = o.r_;
            done_ = o.done_;
            o.done_ = true;
        }
        return *this;
    }
    Reservation(const Reservation &) = delete;
    Reservation &operator=(const Reservation &) = delete;
    ~Reservation() { finish(); }

    /// Where to write: capacity() bytes in the shared mapping.
    uint8_t *data() noexcept { return r_.data; }
    size_t capacity() const noexcept { return r_.capacity; }
#if __cplusplus >= 202002L
    std::span<std::byte> bytes() noexcept {
        return std::span<std::byte>(reinterpret_cast<std::byte *>(r_.data), r_.capacity);
    }
#endif
    /// Sends the first `len` bytes. Abandoned (nothing sent) if it waited
    /// past the queue's reservation timeout.
    Status commit(size_t len, uint64_t key = 0, uint64_t version = 0) noexcept {
        done_ = true;
        return detail::st(shmq_commit(q_, &r_, len, key, version));
    }
    Status abort() noexcept {
        done_ = true;
        return detail::st(shmq_abort(q_, &r_));
    }

  private:
    friend class Queue;
    Reservation(shmq_queue *q, const shmq_reservation &r) noexcept : q_(q), r_(r) {}
    void finish() noexcept {
        if (!done_) {
            done_ = true;
            (void)shmq_abort(q_, &r_);
        }
    }
    shmq_queue *q_ = nullptr;
    shmq_reservation r_{};
    bool done_ = false;
};

/// One attachment to a queue file. Movable, not copyable; closed by the
/// destructor.
class Queue {
  public:
    Queue(Queue &&o) noexcept : q_(std::exchange(o.q_, nullptr)) {}
    Queue &operator=(Queue &&o) noexcept {
        if (this != &o) {
            close();
            q_ = std::exchange(o.q_, nullptr);
        }
        return *this;
    }
    Queue(const Queue &) = delete;
    Queue &operator=(const Queue &) = delete;
    ~Queue() { close(); }

    /// Creates a new queue file (it must not exist).
    static Result<Queue> create(const std::string &path, const Options &opts = Options()) {
        shmq_queue *q = nullptr;
        shmq_status r = shmq_create(path.c_str(), &opts.c, &q);
        if (r != SHMQ_OK)
            return Error::last(detail::st(r));
        return Queue(q);
    }
    /// Opens an existing queue file as a participant.
    static Result<Queue> open(const std::string &path) {
        shmq_queue *q = nullptr;
        shmq_status r = shmq_open(path.c_str(), &q);
        if (r != SHMQ_OK)
            return Error::last(detail::st(r));
        return Queue(q);
    }
    /// Opens an existing queue file as `opts` says.
    static Result<Queue> open(const std::string &path, const OpenOptions &opts) {
        shmq_queue *q = nullptr;
        shmq_status r = shmq_open_ex(path.c_str(), &opts.c, &q);
        if (r != SHMQ_OK)
            return Error::last(detail::st(r));
        return Queue(q);
    }
    /// Opens without attaching: stats, verify, dead letters.
    static Result<Queue> inspect(const std::string &path) {
        shmq_queue *q = nullptr;
        shmq_status r = shmq_inspect(path.c_str(), &q);
        if (r != SHMQ_OK)
            return Error::last(detail::st(r));
        return Queue(q);
    }

    /// Closes now (the destructor does it otherwise).
    Status close() noexcept {
        if (!q_)
            return Status::Ok;
        return detail::st(shmq_close(std::exchange(q_, nullptr)));
    }
    /// The C handle, for calls this wrapper does not cover.
    shmq_queue *handle() const noexcept { return q_; }

    Status send(std::string_view data, uint64_t key = 0, uint64_t version = 0,
                Timeout timeout = try_once) noexcept {
        return detail::st(shmq_send(q_, data.data(), data.size(), key, version, timeout.count()));
    }
#if __cplusplus >= 202002L
    Status send(std::span<const std::byte> data, uint64_t key = 0, uint64_t version = 0,
                Timeout timeout = try_once) noexcept {
        return detail::st(shmq_send(q_, data.data(), data.size(), key, version, timeout.count()));
    }
#endif
    Result<Sent> send(std::string_view data, const SendOptions &o) {
        shmq_send_options so;
        shmq_send_options_init(&so);
        so.key = o.key;
        so.version = o.version;
        so.timeout_ns = o.timeout.count();
        so.delay_ns = static_cast<uint64_t>(o.delay.count());
        Sent s;
        shmq_status r = shmq_send_ex(q_, data.data(), data.size(), &so, &s.position, &s.version);
        if (r != SHMQ_OK)
            return Error::last(detail::st(r));
        return s;
    }
    /// Sends what fits (waiting up to `timeout` for the first); returns how
    /// many were sent.
    Result<size_t> send_batch(const std::vector<std::string_view> &msgs, Timeout timeout = try_once) {
        std::vector<shmq_iovec> iov(msgs.size());
        for (size_t i = 0; i < msgs.size(); i++) {
            iov[i].data = msgs[i].data();
            iov[i].len = msgs[i].size();
        }
        size_t n = 0;
        shmq_status r = shmq_send_batch(q_, iov.data(), iov.size(), &n, timeout.count());
        if (r != SHMQ_OK)
            return Error::last(detail::st(r));
        return n;
    }

    Result<Reservation> reserve(size_t len, Timeout timeout = try_once) {
        shmq_reservation r{};
        shmq_status s = shmq_reserve(q_, len, &r, timeout.count());
        if (s != SHMQ_OK)
            return Error::last(detail::st(s));
        return Reservation(q_, r);
    }

    /// Claims the next message (borrowed: data() points into the mapping).
    Result<Message> claim(Timeout timeout = forever, OnExit on_exit = OnExit::Nack) {
        shmq_message m{};
        shmq_status r = shmq_claim(q_, &m, timeout.count());
        if (r != SHMQ_OK)
            return Error::last(detail::st(r));
        return Message(q_, m, on_exit);
    }
    /// Claims up to `max`: waits for the first, then takes what is there.
    Result<std::vector<Message>> claim_batch(size_t max, Timeout timeout = forever,
                                             OnExit on_exit = OnExit::Nack) {
        std::vector<shmq_message> raw(max ? max : 1);
        size_t n = 0;
        shmq_status r = shmq_claim_batch(q_, raw.data(), max, &n, timeout.count());
        if (r != SHMQ_OK)
            return Error::last(detail::st(r));
        std::vector<Message> out;
        out.reserve(n);
        for (size_t i = 0; i < n; i++)
            out.push_back(Message(q_, raw[i], on_exit));
        return out;
    }
    /// Acks every message of `msgs` that is not settled; returns how many.
    /// Messages claimed through another Queue are refused
    /// (Status::InvalidArgument): none is acked or marked settled then.
    Result<size_t> ack_batch(std::vector<Message> &msgs) {
        std::vector<shmq_message> raw;
        raw.reserve(msgs.size());
        for (auto &m : msgs)
            if (!m.settled())
                raw.push_back(m.raw());
        size_t n = 0;
        shmq_status r = shmq_ack_batch(q_, raw.data(), raw.size(), &n);
        if (r != SHMQ_OK)
            return Error::last(detail::st(r));
        for (auto &m : msgs)
            m.done_ = true;
        return n;
    }

    Result<shmq_stats> stats() const {
        shmq_stats s{};
        s.size = sizeof s;
        shmq_status r = shmq_get_stats(q_, &s);
        if (r != SHMQ_OK)
            return Error::last(detail::st(r));
        return s;
    }
    Result<shmq_info> info() const {
        shmq_info i{};
        i.size = sizeof i;
        shmq_status r = shmq_get_info(q_, &i);
        if (r != SHMQ_OK)
            return Error::last(detail::st(r));
        return i;
    }
    Result<uint64_t> latest_acked_version(uint64_t key) const {
        uint64_t v = 0;
        shmq_status r = shmq_latest_acked_version(q_, key, &v);
        if (r != SHMQ_OK)
            return Error::last(detail::st(r));
        return v;
    }

    /// The dead letters (records without payloads).
    Result<std::vector<shmq_dead_letter>> dead_letters() const {
        size_t total = 0;
        shmq_status r = shmq_dlq_list(q_, nullptr, 0, &total);
        if (r != SHMQ_OK)
            return Error::last(detail::st(r));
        std::vector<shmq_dead_letter> v(total ? total : 1);
        v[0].size = sizeof(shmq_dead_letter);
        r = shmq_dlq_list(q_, v.data(), v.size(), &total);
        if (r != SHMQ_OK)
            return Error::last(detail::st(r));
        v.resize(total < v.size() ? total : v.size());
        return v;
    }
    /// The payload of dead letter `id`.
    Result<std::string> dead_letter_payload(uint64_t id) const {
        shmq_dead_letter d{};
        d.size = sizeof d;
        auto i = info();
        if (!i.ok())
            return i.error();
        std::string buf(i->max_message_size, '\0');
        size_t n = 0;
        shmq_status r = shmq_dlq_get(q_, id, &d, buf.data(), buf.size(), &n);
        if (r != SHMQ_OK)
            return Error::last(detail::st(r));
        buf.resize(n);
        return buf;
    }
    /// Redrives `id` (or all with SHMQ_DLQ_ALL); returns how many.
    Result<size_t> redrive(uint64_t id = SHMQ_DLQ_ALL) {
        size_t n = 0;
        shmq_status r = shmq_dlq_redrive(q_, id, &n);
        if (r != SHMQ_OK)
            return Error::last(detail::st(r));
        return n;
    }
    /// Deletes the dead letter `id` (or all with SHMQ_DLQ_ALL); returns
    /// how many.
    Result<size_t> purge_dead_letters(uint64_t id = SHMQ_DLQ_ALL) {
        size_t n = 0;
        shmq_status r = shmq_dlq_purge(q_, id, &n);
        if (r != SHMQ_OK)
            return Error::last(detail::st(r));
        return n;
    }
    /// Removes every waiting message (ready, pending, delayed); claims in
    /// flight stay with their consumers. Returns how many were removed.
    Result<uint64_t> purge() {
        uint64_t n = 0;
        shmq_status r = shmq_purge(q_, &n);
        if (r != SHMQ_OK)
            return Error::last(detail::st(r));
        return n;
    }
    Status verify() noexcept { return detail::st(shmq_verify(q_)); }

  private:
    explicit Queue(shmq_queue *q) noexcept : q_(q) {}
    shmq_queue *q_ = nullptr;
};

} // namespace shmq

#endif // SHMQ_HPP
