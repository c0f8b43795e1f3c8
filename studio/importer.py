"""Copy audio files into a dataset class folder; the studio runs it as a background job.

    python -m studio.importer --dest data/NAME/positive/imported SOURCE...

Each SOURCE is a file or a folder (searched recursively). Audio files (.wav, .flac, .ogg
that soundfile can read) are copied to DEST/<source name>/<path inside the source>; an
existing file is never overwritten: the copy gets a free name (clip_2.wav, ...). Anything
else is skipped and reported, as is any file whose real path (symlinks followed) leaves the
SOURCE it was found in (and folders reached through a symlink are not entered), so a link
cannot pull in files from outside the browsable roots.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import click
import soundfile as sf
from tqdm import tqdm

from .files import AUDIO_SUFFIXES

MAX_REPORTED = 50
"""Skipped files named one by one in the output; the rest are counted."""


@dataclass
class ImportResult:
    copied: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(source path, reason) for each file not copied."""
    bytes: int = 0


def collect(source: Path) -> tuple[list[tuple[Path, Path]], list[tuple[str, str]]]:
    """(file, path relative to SOURCE's parent) for every file under SOURCE, and the files
    refused because their real path leaves SOURCE. Collected before copying, so importing a
    folder into itself cannot loop."""
    real_source = source.resolve()
    candidates = [source] if source.is_file() else sorted(
        Path(dirpath) / name for dirpath, _, names in os.walk(source) for name in names)
    found, refused = [], []
    for path in candidates:
        if path.name.startswith("."):
            continue
        real = path.resolve()
        if real != real_source and real_source not in real.parents:
            refused.append((str(path), "a symlink leading out of the chosen folder"))
            continue
        found.append((path, path.relative_to(source.parent)))
    return found, refused


def free_name(dest: Path) -> Path:
    """DEST, or DEST with _2, _3, ... before the suffix: the first that does not exist."""
    candidate, n = dest, 1
    while candidate.exists():
        n += 1
        candidate = dest.with_name(f"{dest.stem}_{n}{dest.suffix}")
    return candidate


def copy_without_overwrite(source: Path, dest: Path) -> Path:
    """Copy SOURCE to a free name near DEST: through a hidden temporary file (the dataset
    loader skips dot-files) and a hard link, which fails instead of replacing a file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        while True:
            target = free_name(dest)
            try:
                os.link(tmp, target)
                return target
            except FileExistsError:
                continue  # taken between the check and the link: try the next name
    finally:
        Path(tmp).unlink(missing_ok=True)


def audio_problem(path: Path) -> str:
    """Why PATH is not importable audio; '' when it is."""
    if path.suffix.lower() not in AUDIO_SUFFIXES:
        return f"not an audio file (only {', '.join(AUDIO_SUFFIXES)} are imported)"
    try:
        sf.info(str(path))
    except (RuntimeError, OSError) as exc:  # sf.LibsndfileError is a RuntimeError
        return f"not readable audio ({exc})"
    return ""


def import_files(sources: list[Path], dest: Path, *, progress: bool = True) -> ImportResult:
    result = ImportResult()
    todo: list[tuple[Path, Path]] = []
    for source in sources:
        if not source.exists():
            result.skipped.append((str(source), "does not exist"))
            continue
        found, refused = collect(source)
        todo.extend(found)
        result.skipped.extend(refused)
    for path, relative in tqdm(todo, desc="import", unit="file", disable=not progress, file=sys.stdout):
        problem = audio_problem(path)
        if problem:
            result.skipped.append((str(path), problem))
            continue
        try:
            result.copied.append(copy_without_overwrite(path, dest / relative))
        except OSError as exc:
            result.skipped.append((str(path), f"could not copy: {exc.strerror or exc}"))
            continue
        result.bytes += path.stat().st_size
    return result


@click.command()
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to copy into, e.g. data/NAME/positive/imported.")
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path))
def main(dest: Path, sources: tuple[Path, ...]) -> None:
    """Copy the audio files of SOURCES (files or folders) into DEST without overwriting."""
    result = import_files(list(sources), dest)
    for path, reason in result.skipped[:MAX_REPORTED]:
        click.echo(f"skipped {path}: {reason}")
    if len(result.skipped) > MAX_REPORTED:
        click.echo(f"... and {len(result.skipped) - MAX_REPORTED} more skipped")
    click.echo(f"imported {len(result.copied)} files ({result.bytes / 1e6:.1f} MB) into {dest}; "
               f"skipped {len(result.skipped)}")
    if not result.copied:
        raise click.ClickException("nothing was imported: no readable audio files "
                                   f"({', '.join(AUDIO_SUFFIXES)}) in what was chosen")


if __name__ == "__main__":
    main()
