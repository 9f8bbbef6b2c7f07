"""``python -m gitstate``: the ``gitstate`` command."""

from gitstate.cli import run

if __name__ == "__main__":
    run()
