"""Test setup: the tests exercise the INSTALLED package (`pip install
./bindings/python` builds the wheel, engine included), never the source
tree; tests/run-all.sh installs it in a fresh virtual environment under
target/ and runs pytest from a directory where python/shmq is not
importable."""

import os

import pytest

import shmq

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.realpath(os.path.join(HERE, "..", "python"))


def pytest_report_header(config):
    return f"shmq {shmq.__version__} from {os.path.dirname(shmq.__file__)}"


@pytest.fixture(scope="session", autouse=True)
def _installed_package():
    where = os.path.realpath(shmq.__file__)
    if where.startswith(SOURCE + os.sep):
        pytest.exit(f"shmq was imported from the source tree ({where}), not from an installed "
                    "wheel: `pip install ./bindings/python` and run pytest from elsewhere", 2)
