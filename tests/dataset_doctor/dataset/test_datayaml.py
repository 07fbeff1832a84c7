"""data.yaml conventions of design.md section 1, and the errors for everything unusable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from dataset_doctor.dataset.datayaml import (
    is_image_file,
    label_path_for,
    label_path_text,
    label_paths_text,
    list_split_images,
    load_data_yaml,
)
from dataset_doctor.errors import DoctorError


def write_yaml(path: Path, content: dict | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


def touch_images(directory: Path, *names: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_bytes(b"x")


def image_names(config, split: str) -> list[str]:
    return [p.name for p in list_split_images(config, split)]


def test_root_defaults_to_the_yaml_directory(tmp_path):
    touch_images(tmp_path / "images/train", "a.jpg")
    touch_images(tmp_path / "images/val", "b.jpg")
    config = load_data_yaml(write_yaml(tmp_path / "data.yaml", {"train": "images/train", "val": "images/val",
                                                                 "names": ["cat"]}))
    assert config.root == tmp_path.resolve()
    assert image_names(config, "train") == ["a.jpg"] and image_names(config, "val") == ["b.jpg"]


def test_relative_path_key_is_resolved_against_the_yaml_directory(tmp_path):
    touch_images(tmp_path / "ds/images/train", "a.jpg")
    touch_images(tmp_path / "ds/images/val", "b.jpg")
    yaml_path = write_yaml(tmp_path / "configs/data.yaml", {"path": "../ds", "train": "images/train",
                                                            "val": "images/val", "names": ["cat"]})
    assert load_data_yaml(yaml_path).root == (tmp_path / "ds").resolve()


def test_absolute_path_key(tmp_path):
    touch_images(tmp_path / "ds/images/train", "a.jpg")
    touch_images(tmp_path / "ds/images/val", "b.jpg")
    yaml_path = write_yaml(tmp_path / "elsewhere/data.yaml", {"path": str(tmp_path / "ds"), "train": "images/train",
                                                              "val": "images/val", "names": ["cat"]})
    assert load_data_yaml(yaml_path).root == (tmp_path / "ds").resolve()


def test_txt_lists_relative_to_root_and_dot_slash_relative_to_the_list(tmp_path):
    touch_images(tmp_path / "images/train", "a.jpg", "b.png")
    touch_images(tmp_path / "lists/pics", "c.jpg")
    (tmp_path / "train.txt").write_text("images/train/a.jpg\n\n# a comment\nimages/train/b.png\nnotes.md\n")
    (tmp_path / "lists/val.txt").write_text("./pics/c.jpg\n")
    config = load_data_yaml(write_yaml(tmp_path / "data.yaml", {"train": "train.txt", "val": "lists/val.txt",
                                                                 "names": ["cat"]}))
    assert image_names(config, "train") == ["a.jpg", "b.png"]
    assert list_split_images(config, "val") == [tmp_path.resolve() / "lists/pics/c.jpg"]


def test_a_split_can_be_a_list_of_directories_and_files(tmp_path):
    touch_images(tmp_path / "images/train1", "a.jpg")
    touch_images(tmp_path / "images/train2/nested", "b.jpg")
    touch_images(tmp_path / "images/val", "c.jpg")
    (tmp_path / "more.txt").write_text("images/val/c.jpg\n")
    config = load_data_yaml(write_yaml(tmp_path / "data.yaml", {
        "train": ["images/train1", "images/train2", "more.txt"], "val": "images/val", "names": ["cat"]}))
    assert image_names(config, "train") == ["a.jpg", "b.jpg", "c.jpg"]


def test_roboflow_parent_paths_fall_back_to_the_root(tmp_path):
    """Roboflow writes `train: ../train/images` next to a yaml inside the dataset."""
    touch_images(tmp_path / "train/images", "a.jpg")
    touch_images(tmp_path / "valid/images", "b.jpg")
    config = load_data_yaml(write_yaml(tmp_path / "data.yaml", {"train": "../train/images", "val": "../valid/images",
                                                                 "nc": 1, "names": ["fish"]}))
    assert image_names(config, "train") == ["a.jpg"]
    assert config.splits["val"] == ((tmp_path / "valid/images").resolve(),)


def test_image_extensions_are_matched_case_insensitively(tmp_path):
    names = ["a.JPG", "b.jpeg", "c.PNG", "d.bmp", "e.tif", "f.TIFF", "g.webp", "h.dng", "i.mpo"]
    touch_images(tmp_path / "images/train", *names, "notes.txt", "clip.mp4", "noext")
    touch_images(tmp_path / "images/val", "z.jpg")
    config = load_data_yaml(write_yaml(tmp_path / "data.yaml", {"train": "images/train", "val": "images/val",
                                                                 "names": ["cat"]}))
    assert image_names(config, "train") == names


def test_a_folder_lists_exactly_the_names_is_image_file_accepts(tmp_path):
    names = ["a.b.JPG", "jpg", ".png", "x.", "y.jpg.txt", "z.Jpeg", "w.png~", "v.webp", "u.tiff"]
    touch_images(tmp_path / "images/train", *names)
    (tmp_path / "images/train/folder.jpg").mkdir()  # a folder is walked, never listed as an image
    touch_images(tmp_path / "images/train/folder.jpg", "inner.png")
    touch_images(tmp_path / "images/val", "z.jpg")
    config = load_data_yaml(write_yaml(tmp_path / "data.yaml", {"train": "images/train", "val": "images/val",
                                                                 "names": ["cat"]}))
    expected = sorted(name for name in names if is_image_file(name)) + ["inner.png"]
    assert image_names(config, "train") == expected and "jpg" in expected and "x." not in expected


def test_test_split_is_optional_and_read_when_given(tmp_path):
    for split in ("train", "val", "test"):
        touch_images(tmp_path / f"images/{split}", f"{split}.jpg")
    without = load_data_yaml(write_yaml(tmp_path / "a.yaml", {"train": "images/train", "val": "images/val",
                                                               "names": ["x"]}))
    with_test = load_data_yaml(write_yaml(tmp_path / "b.yaml", {"train": "images/train", "val": "images/val",
                                                                 "test": "images/test", "names": ["x"]}))
    assert list(without.splits) == ["train", "val"]
    assert list(with_test.splits) == ["train", "val", "test"]


@pytest.mark.parametrize(("names", "nc", "expected", "problem"), [
    (["cat", "dog"], None, ("cat", "dog"), None),
    (["cat", "dog"], 2, ("cat", "dog"), None),
    ({0: "cat", 1: "dog"}, None, ("cat", "dog"), None),
    ({"0": "cat", "1": "dog"}, 2, ("cat", "dog"), None),
    ({0: "cat", 2: "bird"}, None, ("cat", "1", "bird"), "gaps"),
    (["cat", "dog"], 3, ("cat", "dog"), "nc is 3 but 2 names"),
    (None, 2, ("0", "1"), "no 'names'"),
    (None, None, (), "no 'names'"),
    ([], None, (), "'names' is empty"),
    ("cat", None, (), "must be a list or a mapping"),
])
def test_names_as_list_or_mapping_and_names_mismatch_findings(tmp_path, names, nc, expected, problem):
    touch_images(tmp_path / "images/train", "a.jpg")
    touch_images(tmp_path / "images/val", "b.jpg")
    content = {"train": "images/train", "val": "images/val"}
    if names is not None:
        content["names"] = names
    if nc is not None:
        content["nc"] = nc
    config = load_data_yaml(write_yaml(tmp_path / "data.yaml", content))
    assert config.names == expected
    if problem is None:
        assert config.problems == ()
        config.require_valid_names()
    else:
        assert len(config.problems) >= 1
        finding = config.problems[0]
        assert finding.check == "names-mismatch" and finding.severity == "error"
        assert problem in finding.message
        with pytest.raises(DoctorError, match="data.yaml"):
            config.require_valid_names()


@pytest.mark.parametrize(("image", "label"), [
    ("/d/images/train/a.jpg", "/d/labels/train/a.txt"),
    ("/d/images/train/sub/a.b.PNG", "/d/labels/train/sub/a.b.txt"),
    ("/images/x/images/train/a.jpg", "/images/x/labels/train/a.txt"),  # only the last /images/ changes
    ("/d/train/a.jpg", "/d/train/a.txt"),  # no images component: beside the image
    ("/d/my_images/train/a.jpg", "/d/my_images/train/a.txt"),  # a whole path component, not a substring
])
def test_label_path_rule(image, label):
    assert label_path_for(Path(image.replace("/", os.sep))) == Path(label.replace("/", os.sep))


def test_a_directory_argument_finds_its_data_yaml(tmp_path):
    touch_images(tmp_path / "images/train", "a.jpg")
    touch_images(tmp_path / "images/val", "b.jpg")
    write_yaml(tmp_path / "data.yaml", {"train": "images/train", "val": "images/val", "names": ["x"]})
    assert load_data_yaml(tmp_path).yaml_path == (tmp_path / "data.yaml").resolve()


def one_line_error(call) -> str:
    with pytest.raises(DoctorError) as raised:
        call()
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_error_missing_yaml(tmp_path):
    message = one_line_error(lambda: load_data_yaml(tmp_path / "nope.yaml"))
    assert "nope.yaml" in message and "not found" in message


def test_error_invalid_yaml_names_file_and_line(tmp_path):
    path = write_yaml(tmp_path / "data.yaml", "train: images/train\nval: [unclosed\nnames: [a]\n")
    message = one_line_error(lambda: load_data_yaml(path))
    assert "data.yaml:" in message and "invalid YAML" in message


def test_error_yaml_that_is_not_a_mapping(tmp_path):
    path = write_yaml(tmp_path / "data.yaml", "- just\n- a list\n")
    assert "mapping" in one_line_error(lambda: load_data_yaml(path))


def test_error_missing_required_split(tmp_path):
    touch_images(tmp_path / "images/train", "a.jpg")
    path = write_yaml(tmp_path / "data.yaml", {"train": "images/train", "names": ["x"]})
    assert "no 'val' split" in one_line_error(lambda: load_data_yaml(path))


def test_error_missing_split_directory_names_the_yaml(tmp_path):
    touch_images(tmp_path / "images/train", "a.jpg")
    path = write_yaml(tmp_path / "data.yaml", {"train": "images/train", "val": "images/valid", "names": ["x"]})
    message = one_line_error(lambda: load_data_yaml(path))
    assert str(path) in message and "images/valid" in message


def test_error_empty_split(tmp_path):
    touch_images(tmp_path / "images/train", "a.jpg")
    (tmp_path / "images/val").mkdir(parents=True)
    (tmp_path / "images/val/readme.md").write_text("nothing here")
    config = load_data_yaml(write_yaml(tmp_path / "data.yaml", {"train": "images/train", "val": "images/val",
                                                                 "names": ["x"]}))
    assert "split 'val' has no images" in one_line_error(lambda: list_split_images(config, "val"))


def test_error_missing_root(tmp_path):
    path = write_yaml(tmp_path / "data.yaml", {"path": "missing", "train": "a", "val": "b", "names": ["x"]})
    assert "dataset root 'missing' not found" in one_line_error(lambda: load_data_yaml(path))


# --- names, links and huge images (issue 16 items 3, 5, 9) ---------------------------------------------------------

def test_link_loops_are_followed_once_and_recorded(tmp_path):
    from dataset_doctor.dataset.datayaml import list_split_image_files
    from tests.odd_files import dataset_with_loops

    config = load_data_yaml(dataset_with_loops(tmp_path / "data"))
    links: list[str] = []
    images = list_split_image_files(config, "train", links)  # without the fix: 41 copies each, or no end
    train = config.root / "images" / "train"
    assert images == [str(train / f"im{n}.jpg") for n in range(3)]
    assert links == [str(train / "loop"), str(train / "up")]


def test_a_link_to_a_new_directory_is_followed_and_the_real_directory_wins(tmp_path):
    from dataset_doctor.dataset.datayaml import list_split_image_files

    train = tmp_path / "images" / "train"
    touch_images(train / "b", "x.jpg")
    touch_images(tmp_path / "elsewhere", "y.jpg")
    os.symlink("b", train / "a")  # sorts before the real directory it points to
    os.symlink("../../elsewhere", train / "more")
    config = load_data_yaml(write_yaml(tmp_path / "data.yaml", {"train": "images/train", "val": "images/train"}))
    links: list[str] = []
    assert list_split_image_files(config, "train", links) == [str(train / "b" / "x.jpg"), str(train / "more" / "y.jpg")]
    assert links == [str(train / "a")]
def alias_bomb(levels: int = 10, width: int = 9) -> str:
    """A billion-laughs YAML: each level lists `width` aliases of the one below; `names` is the top level."""
    lines = ["train: images/train", "val: images/val", 'l0: &l0 ["lol"]']
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * width) + "]")
    lines.append(f"names: [*l{levels - 1}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_in_names_is_one_error_before_it_is_expanded(tmp_path):
    import time

    touch_images(tmp_path / "images/train", "a.jpg")
    touch_images(tmp_path / "images/val", "b.jpg")
    yaml_path = write_yaml(tmp_path / "data.yaml", alias_bomb())  # 9^9 = 387 million strings once expanded
    started = time.perf_counter()
    with pytest.raises(DoctorError, match="aliases expand to more than 1,000,000 values") as caught:
        load_data_yaml(yaml_path)
    assert time.perf_counter() - started < 0.5
    assert str(yaml_path) in str(caught.value)


def test_modest_aliases_still_load(tmp_path):
    touch_images(tmp_path / "images/train", "a.jpg")
    touch_images(tmp_path / "images/val", "b.jpg")
    yaml_path = write_yaml(tmp_path / "data.yaml", "train: &t images/train\nval: images/val\n"
                                                   "extra: [*t, *t]\nnames: [cat, dog]\n")
    assert load_data_yaml(yaml_path).names == ("cat", "dog")


def test_a_recursive_alias_is_one_error(tmp_path):
    yaml_path = write_yaml(tmp_path / "data.yaml", "train: a\nval: b\nnames: &n [cat, *n]\n")
    with pytest.raises(DoctorError, match="refers to itself"):
        load_data_yaml(yaml_path)


@pytest.mark.parametrize(("names", "message"), [
    (list(range(10_001)), "'names' has 10,001 classes; at most 10,000"),
    (["cat", "x" * 257], "'names' entry 1 is 257 characters long"),
    (["cat", ["a", "b"]], "'names' entry 1 is a list, not a class name"),
    ({0: "cat", 1: {"a": 1}}, "'names' entry 1 is a dict, not a class name"),
])
def test_names_count_and_length_are_capped(tmp_path, names, message):
    yaml_path = write_yaml(tmp_path / "data.yaml", {"train": "a", "val": "b", "names": names})
    with pytest.raises(DoctorError, match=message):
        load_data_yaml(yaml_path)


def test_a_huge_class_id_in_a_names_mapping_is_a_finding_not_a_billion_names(tmp_path):
    touch_images(tmp_path / "images/train", "a.jpg")
    touch_images(tmp_path / "images/val", "b.jpg")
    yaml_path = write_yaml(tmp_path / "data.yaml", "train: images/train\nval: images/val\n"
                                                   "names: {0: cat, 1000000000: dog}\n")
    config = load_data_yaml(yaml_path)
    assert config.names == () and "class id 1000000000" in config.problems[0].message


def test_an_oversized_yaml_is_refused_unread(tmp_path):
    yaml_path = tmp_path / "data.yaml"
    yaml_path.write_text("train: a\nval: b\n#" + "x" * (8 * 2**20) + "\n")
    with pytest.raises(DoctorError, match="larger than 8 MiB"):
        load_data_yaml(yaml_path)


_PATH_PARTS = st.sampled_from([os.sep, ".", "images", "labels", "a", "b.jpg", "x.tar", "images.png", ""])


@given(st.lists(st.lists(_PATH_PARTS, max_size=8).map("".join), max_size=12))
def test_label_paths_text_is_label_path_text_of_every_path(paths):
    """The batch version (one label folder worked out per folder) gives exactly the per-path strings."""
    assert label_paths_text(paths) == [label_path_text(path) for path in paths]
