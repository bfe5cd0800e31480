"""Command line of the cleanup tools: ``pancake-cleanup days|files|size|free`` and the
``util/limit_*.py`` scripts, which are the same four commands under their original names.

Each command is described once, in ``COMMANDS``: its flags, its help and what it
does with them. ``script_main`` gives one as a program of its own (the util/
scripts); ``main`` gives them all as subcommands (the installed command). The
deleting itself, and its safety rules, are in ``cleanup``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence

from . import cleanup, terminal

DRY_RUN_HELP = "only say what would go"
RECURSIVE_HELP = "also look in subfolders"


@dataclass(frozen=True)
class Command:
    """One cleanup policy as a command line; built and run on the main thread."""

    #: the subcommand of pancake-cleanup
    name: str
    #: the original script in util/
    script: str
    summary: str
    details: str
    example: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    #: deletes what the parsed arguments say; returns the exit code
    run: Callable[[argparse.Namespace], int]


def _pairs_arguments(metavar: str, help: str, recursive: bool):
    def add(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("pairs", nargs="+", metavar=metavar, help=help)
        parser.add_argument("--dry-run", action="store_true", help=DRY_RUN_HELP)
        if recursive:
            parser.add_argument("--recursive", action="store_true", help=RECURSIVE_HELP)

    return add


def _free_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--min-free", required=True, metavar="SIZE", help="e.g. 1G or 500M")
    parser.add_argument("dirs", nargs="+", metavar="dir", help="directories with recordings")
    parser.add_argument("--dry-run", action="store_true", help=DRY_RUN_HELP)
    parser.add_argument("--recursive", action="store_true", help=RECURSIVE_HELP)


def _each_pair(parse_limit: Callable[[str], int], apply: Callable[..., None]):
    """A command taking ``dir LIMIT`` pairs: ``apply(dir, limit, deleter, args)`` for each."""

    def run(args: argparse.Namespace) -> int:
        pairs = cleanup.parse_pairs(args.pairs, parse_limit)
        terminal.configure_logging()
        deleter = cleanup.Deleter(dry_run=args.dry_run)
        for directory, limit in pairs:
            apply(directory, limit, deleter, args)
        return 1 if deleter.failures else 0

    return run


def _days(top: str, keep: int, deleter: cleanup.Deleter, args: argparse.Namespace) -> None:
    cleanup.limit_days(top, keep, deleter)


def _files(directory: str, keep: int, deleter: cleanup.Deleter, args: argparse.Namespace):
    cleanup.limit_by_number(directory, keep, deleter, recursive=args.recursive)


def _size(directory: str, max_bytes: int, deleter: cleanup.Deleter, args: argparse.Namespace):
    cleanup.limit_by_size(directory, max_bytes, deleter, recursive=args.recursive)


def _run_free(args: argparse.Namespace) -> int:
    min_free = cleanup.parse_size(args.min_free)
    dirs = [cleanup.existing_directory(d) for d in args.dirs]
    terminal.configure_logging()
    deleter = cleanup.Deleter(dry_run=args.dry_run)
    reached = cleanup.limit_free_space(dirs, min_free, deleter, recursive=args.recursive)
    return 0 if reached and not deleter.failures else 1


COMMANDS = (
    Command(
        name="days",
        script="limit_days.py",
        summary="Keep the newest N day folders of each YYYY/MM/DD tree.",
        details="""\
Arguments come in pairs: the top of a tree (the folder holding the YYYY folders)
and how many day folders to keep. In each older day folder the recordings are
deleted and the folder is removed; a day folder that holds anything else keeps
those files and stays (the log says so). Month and year folders left empty go too.
Symbolic links are never followed; files written in the last minute stay.""",
        example="bak/cam1 30 bak/cam2 30",
        add_arguments=_pairs_arguments("dir N", "a tree and a number of days", recursive=False),
        run=_each_pair(cleanup.parse_count, _days),
    ),
    Command(
        name="files",
        script="limit_files_by_number.py",
        summary="Keep the newest N recordings in each directory.",
        details="""\
Arguments come in pairs: a directory and how many recordings to keep there. Only
recordings (20200623-1715.h264, 20200623-180511.mp4, ...) are counted and deleted;
other files, symbolic links and files written in the last minute stay. With
--recursive, subfolders count too (a YYYY/MM/DD backup tree, say).""",
        example="h264 200 mp4 400",
        add_arguments=_pairs_arguments("dir N", "a directory and a count", recursive=True),
        run=_each_pair(cleanup.parse_count, _files),
    ),
    Command(
        name="size",
        script="limit_files_by_size.py",
        summary="Keep the newest recordings of each directory within a total size.",
        details="""\
Arguments come in pairs: a directory and the most its recordings may take up, in
plain bytes (1073741824) or with K, M, G or T (powers of 1024: 500M, 2G, 1.5T).
Counting back from the newest recording, the first that would go over the limit
and every older one are deleted. Only recordings count and go; other files,
symbolic links and files written in the last minute stay.""",
        example="h264 4G mp4 8G",
        add_arguments=_pairs_arguments("dir SIZE", "a directory and a size", recursive=True),
        run=_each_pair(cleanup.parse_size, _size),
    ),
    Command(
        name="free",
        script="limit_free_space.py",
        summary="Delete the oldest recordings until the disk has SIZE free.",
        details="""\
The last guard against a full SD card: whatever the other limits say, recordings
go, oldest first across all the directories given, until the file system holding
them has at least --min-free free (plain bytes, or K, M, G or T, powers of 1024).
Directories on different file systems are handled per file system. Only
recordings go; other files, symbolic links and files written in the last minute
stay. Exits 1 if the target could not be reached.""",
        example="--min-free 1G h264 mp4",
        add_arguments=_free_arguments,
        run=_run_free,
    ),
)
BY_NAME: Dict[str, Command] = {command.name: command for command in COMMANDS}
BY_SCRIPT: Dict[str, Command] = {command.script: command for command in COMMANDS}


def _describe(parser: argparse.ArgumentParser, command: Command) -> argparse.ArgumentParser:
    parser.description = f"{command.summary}\n\n{command.details}"
    parser.epilog = f"example: %(prog)s {command.example}"
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    command.add_arguments(parser)
    parser.set_defaults(command=command, prog=parser.prog)
    return parser


def _run(args: argparse.Namespace) -> int:
    """Run the chosen command; a user's mistake is one line naming it ("pancake-cleanup days")."""
    return terminal.run(lambda _: args.command.run(args), prog=args.prog)


def script_main(script: str, argv: Optional[Sequence[str]] = None) -> int:
    """One command as its own program, as ``util/<script>`` has always been."""
    parser = _describe(terminal.ArgumentParser(), BY_SCRIPT[script])
    return _run(parser.parse_args(argv))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``pancake-cleanup COMMAND ...``: every command under one program."""
    parser = terminal.ArgumentParser(
        description="Delete old recordings, by one of four policies; "
        "'%(prog)s COMMAND --help' tells more about each.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for command in COMMANDS:
        sub = commands.add_parser(command.name, help=f"{command.summary} (util/{command.script})")
        _describe(sub, command)
    return _run(parser.parse_args(argv))
