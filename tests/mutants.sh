#!/usr/bin/env bash
# The mutation check: plants one-line bugs in a copy of the engine, one at a
# time, and runs the suites that should catch each. A plant that no suite
# catches is a hole in the tests: the script says which and exits 1.
#
#   bash tests/mutants.sh              # every plant, its suites
#   bash tests/mutants.sh held-fence   # the plants named
#   SHMQ_MUTANTS_ALL=1 bash tests/mutants.sh   # every plant against every suite listed
#
# Each plant is: a name, a file, a Perl substitution that must change that
# file, and the suites (cargo test arguments) expected to catch it. The copy
# lives under target/mutants (the repository is never touched); builds share
# one target directory there, so each plant rebuilds the engine and the
# suites only (debug builds: quicker to build, and overflow checks on).
# Slow (a minute or more per plant): not part of the CI run. Each plant's
# output is kept in target/mutants/NAME.log.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$root/target/mutants
mkdir -p "$work"

# name % file % perl substitution % suites (;-separated cargo test argument sets)
plants=$(cat <<'EOF'
held-fence%src/engine/settle.rs%s/\|\| !self\.same_generation\(c\.generation\(\), generation\)//%--lib engine::;--test guarantees_rare_paths;--test model
lease-at-settle%src/engine/settle.rs%s/\.is_some_and\(\|deadline\| deadline <= now\)/.is_some_and(|_| false)/%--test model;--test torture
claim-freed-not-redelivered%src/engine/repair.rs%s/if self\.transit\(i, w, state::PENDING, 0\)\.is_some\(\) \{\n(\s*)self\.release_key/if self.transit(i, w, state::FREE, 0).is_some() {\n$1self.release_key/%--test kill;--test model;--test torture
taker-key-not-released%src/engine/keyed.rs%s/fn release_taken_key\(&self, dead: u64\) \{/fn release_taken_key(&self, dead: u64) {\n        if dead < u64::MAX { return; }/%--test keys_kill;--test model_keys;loom:--test loom_keys keyed_consumer_crash
transit-not-bounded%src/engine/keyed.rs%s/if now >= since\.saturating_add\(self\.config\.lease_ns\) \{/if false {/%--lib engine::;--test model_keys
room-only-lookahead%src/engine/produce.rs%s/room = self\.free_slot_within\(\*p, self\.capacity\(\)\);/room = 0;/%--lib engine::;--test guarantees_rare_paths
equal-version-stale%src/engine/keyed.rs%s/if c\.version >= keys\.last_acked\(e\) \{/if c.version > keys.last_acked(e) {/%--test keys;--test model_keys
dlq-source-by-seq%src/engine/mod.rs%s/self\.token_of\(slot, c\.generation\(\)\)\n/self.token_of(slot, c.generation() ^ (self.slot_word(slot).seq() << 1))\n/%--lib engine::;--test model
head-ignores-tail%src/engine/claim.rs%s/if d < 0 && self\.below_tail\(\*p\) \{/if false {/%--test model;narrow:--lib engine::
liveness-off%src/queue/maintenance.rs%s/fn alive\(&self, index: u64, pid: u32\) -> bool \{/fn alive(&self, index: u64, pid: u32) -> bool {\n        if index < u64::MAX { return true; }/%--test kill;--test torture
capacity-plus-one%src/queue/open.rs%s/capacity: opts\.capacity,/capacity: opts.capacity + 1,/%--test api;--test torture;--test model
fork-not-refused%src/queue/checks.rs%s/fn me\(&self, op: &str\) -> Result<u64> \{/fn me(&self, op: &str) -> Result<u64> {\n        if let Some(m) = self.me { return Ok(m); }/%--test g3_fork
EOF
)

want=("$@")
caught_all=1
printf '%-28s %s\n' plant "suites that caught it"
while IFS='%' read -r name file subst suites; do
  [ -z "$name" ] && continue
  if [ ${#want[@]} -gt 0 ] && ! printf '%s\n' "${want[@]}" | grep -qx "$name"; then
    continue
  fi
  src=$work/src
  rm -rf "$src" "$work/$name.log"
  mkdir -p "$src"
  git ls-files -z | xargs -0 -I{} cp --parents {} "$src"/
  perl -0pi -e "$subst" "$src/$file"
  if cmp -s "$root/$file" "$src/$file"; then
    printf '%-28s %s\n' "$name" "PLANT DID NOT APPLY (update tests/mutants.sh)"
    caught_all=0
    continue
  fi
  caught=()
  IFS=';' read -ra sets <<<"$suites"
  for set in "${sets[@]}"; do
    # A set may name a build: "loom:ARGS" (--cfg shmq_loom) or
    # "narrow:ARGS" (--cfg shmq_narrow, 4-bit sequences and laps).
    flags="" dir=target args=$set
    case $set in
      loom:*) flags="--cfg shmq_loom" dir=target-loom args=${set#loom:} ;;
      narrow:*) flags="--cfg shmq_narrow" dir=target-narrow args=${set#narrow:} ;;
    esac
    # shellcheck disable=SC2086
    if ! (cd "$src" && RUSTFLAGS="$flags" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=$work/$dir \
          timeout 1200 cargo test -q $args >>"$work/$name.log" 2>&1); then
      caught+=("$set")
      [ -z "${SHMQ_MUTANTS_ALL:-}" ] && break
    fi
  done
  if [ ${#caught[@]} -eq 0 ]; then
    printf '%-28s %s\n' "$name" "NOT CAUGHT by: $suites"
    caught_all=0
  else
    printf '%-28s %s\n' "$name" "$(IFS=,; echo "${caught[*]}")"
  fi
  rm -rf "$src"
done <<<"$plants"
[ "$caught_all" = 1 ]
