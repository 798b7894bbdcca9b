"""`marble …` that records what this process writes under $MARBLE_AUDIT_ROOT (a helper the tests launch).

Python's audit hooks see every directory made, file renamed and file opened for writing, however
deep in a library it happens; at exit the list goes to $MARBLE_AUDIT_OUT.rank<RANK>.json.
"""

import atexit
import json
import os
import sys

ROOT = os.path.abspath(os.environ["MARBLE_AUDIT_ROOT"]) + os.sep
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT
events: list[list[str]] = []


def inside(path) -> bool:
    # abspath is string work only: no file-system call that would raise audit events of its own.
    return isinstance(path, (str, bytes, os.PathLike)) and os.path.abspath(os.fsdecode(path)).startswith(ROOT)


def record(event: str, args: tuple) -> None:
    if event == "os.mkdir" and inside(args[0]):
        events.append(["mkdir", os.fsdecode(args[0])])
    elif event == "os.rename" and inside(args[1]):
        events.append(["rename", os.fsdecode(args[1])])
    elif event == "open" and inside(args[0]) and args[2] & WRITE_FLAGS:
        events.append(["write", os.fsdecode(args[0])])


def save() -> None:
    path = f"{os.environ['MARBLE_AUDIT_OUT']}.rank{os.environ.get('RANK', '0')}.json"
    with open(path, "w") as handle:
        json.dump(list(events), handle)


def audited_main(argv: list[str]) -> int:
    sys.addaudithook(record)
    atexit.register(save)
    from marble.cli import main

    return main(argv)


if __name__ == "__main__":
    sys.exit(audited_main(sys.argv[1:]))
