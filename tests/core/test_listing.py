"""One walk lists images and videos everywhere (core/data.py iter_files): training's scan,
``dftui predict`` and the Classify folder (expand_media), prepare's sources and the demo-data
check see the same files."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from dftui.core.data import IMAGE_EXTENSIONS, expand_inputs, list_files, scan_folder
from dftui.core.demo import has_images
from dftui.core.media import expand_media
from dftui.core.predict import expand_images


def _tree(root: Path) -> Path:
    """root/real, root/fake (fake is a link to a folder elsewhere), hidden entries, a loop,
    an upper-case extension, a video name and a text file."""
    elsewhere = root.parent / f"{root.name}-elsewhere"
    for folder in (root / "real" / "sub", elsewhere):
        folder.mkdir(parents=True)
    for name in ("real/a.jpg", "real/sub/b.PNG", "real/.hidden.jpg", "real/notes.txt"):
        Image.new("RGB", (8, 8)).save(root / name, format="PNG")
    (root / "real" / ".cache").mkdir()
    Image.new("RGB", (8, 8)).save(root / "real" / ".cache" / "c.jpg")
    (root / "real" / "clip.mp4").write_bytes(b"not decoded here")
    Image.new("RGB", (8, 8)).save(elsewhere / "d.jpg")
    (root / "fake").symlink_to(elsewhere, target_is_directory=True)
    (elsewhere / "loop").symlink_to(elsewhere, target_is_directory=True)  # back to itself
    return root


def test_every_lister_sees_the_same_images(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data")
    notes: list[str] = []
    found = list_files(root, IMAGE_EXTENSIONS, notes)
    names = [Path(p).relative_to(root).as_posix() for p in found]
    assert names == ["fake/d.jpg", "real/a.jpg", "real/sub/b.PNG"]
    assert any("links back" in n for n in notes)  # the loop was noted, not followed forever
    # predict's and Classify's lists walk the same way: the linked fake/ folder is included
    # (pathlib's rglob, used before, did not follow it).
    assert [str(p) for p in expand_images([root])] == found
    media = [p.relative_to(root).as_posix() for p in expand_media([str(root)])]
    assert media == ["fake/d.jpg", "real/a.jpg", "real/clip.mp4", "real/sub/b.PNG"]
    scan = scan_folder(root)
    assert scan.total == 3
    hidden_only = tmp_path / "hidden-only" / ".cache"
    hidden_only.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(hidden_only / "c.jpg")
    assert has_images(root / "fake") and not has_images(hidden_only.parent)


def test_files_named_directly_are_kept_whatever_their_name(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data")
    named = root / "real" / "notes.txt"
    out = expand_inputs([named, root / "real" / "sub"], IMAGE_EXTENSIONS)
    assert out == [named, root / "real" / "sub" / "b.PNG"]
