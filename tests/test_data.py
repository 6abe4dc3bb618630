"""The data loader: npz and image folders, subsetting, and one clear error per mistake."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_sample_images

from onnxslim_kd.data import Preprocess, load_data
from onnxslim_kd.errors import InputError
from tests.builders import conv_net


def _save(tmp_path, **arrays):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return path


def _images(n=6):
    return np.random.default_rng(0).standard_normal((n, 3, 8, 8)).astype(np.float32)


def test_npz_by_input_name_with_labels(tmp_path):
    labels = np.arange(6, dtype=np.int64) % 5
    data = load_data(_save(tmp_path, input=_images(), labels=labels), conv_net())
    assert len(data) == 6 and data.inputs["input"].shape == (6, 3, 8, 8)
    np.testing.assert_array_equal(data.labels, labels)


def test_single_input_model_takes_any_single_array(tmp_path):
    data = load_data(_save(tmp_path, x_test=_images()), conv_net())
    assert list(data.inputs) == ["input"]


def test_subset_is_deterministic_and_keeps_labels_aligned(tmp_path):
    images = _images(50)
    labels = np.arange(50, dtype=np.int64)
    path = _save(tmp_path, input=images, labels=labels)
    first = load_data(path, conv_net(), samples=10)
    second = load_data(path, conv_net(), samples=10)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert len(first) == 10 and len(set(first.labels.tolist())) == 10
    assert first.labels.tolist() != list(range(10))  # spread over the set, not the first N
    np.testing.assert_array_equal(first.inputs["input"], images[first.labels])


def test_batches_cover_every_sample(tmp_path):
    data = load_data(_save(tmp_path, input=_images(7)), conv_net())
    sizes = [len(b["input"]) for b in data.batches(3)]
    assert sizes == [3, 3, 1]


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"input": np.zeros((4, 3, 8), np.float32)}, "input 'input' has rank 3, expected float32"),
        ({"input": np.zeros((4, 3, 9, 8), np.float32)}, "input 'input' axis 2 is 9"),
        ({"input": np.zeros((4, 3, 8, 8), np.float64)}, "input 'input' has dtype float64"),
        ({"input": np.zeros((0, 3, 8, 8), np.float32)}, "the data set is empty"),
        (
            {"other": np.zeros((4, 3, 8, 8)), "more": np.zeros(4)},
            "no array for model input 'input'",
        ),
        (
            {"input": np.zeros((4, 3, 8, 8), np.float32), "labels": np.zeros(3, np.int64)},
            "3 labels for 4 samples",
        ),
        (
            {"input": np.zeros((4, 3, 8, 8), np.float32), "labels": np.zeros(4, np.float32)},
            "'labels' must be integer class ids \\[N\\], or label sequences",
        ),
    ],
)
def test_mismatched_data(tmp_path, arrays, message):
    with pytest.raises(InputError, match=message):
        load_data(_save(tmp_path, **arrays), conv_net())


def test_nan_values_are_reported_with_the_sample(tmp_path):
    images = _images()
    images[4, 0, 1, 1] = np.nan
    with pytest.raises(InputError, match=r"1 NaN/Inf values \(first in sample 4\)"):
        load_data(_save(tmp_path, input=images), conv_net())


def test_not_an_npz(tmp_path):
    path = tmp_path / "data.npz"
    path.write_text("nope")
    with pytest.raises(InputError, match=r"not an \.npz archive"):
        load_data(path, conv_net())


def test_image_folder_with_class_subfolders(tmp_path):
    """Real photos (scikit-learn's samples) resized, center-cropped and normalised."""
    photos = load_sample_images().images  # two 427x640 RGB images
    for index, photo in enumerate(photos):
        folder = tmp_path / f"class_{index}"
        folder.mkdir()
        Image.fromarray(photo).save(folder / "photo.png")
    spec = Preprocess.parse("resize=8,mean=0.5/0.5/0.5,std=0.25/0.25/0.25")
    data = load_data(tmp_path, conv_net(), preprocess=spec)
    assert data.inputs["input"].shape == (2, 3, 8, 8)
    assert data.inputs["input"].dtype == np.float32
    np.testing.assert_array_equal(data.labels, [0, 1])
    resized = Image.fromarray(photos[0]).resize((12, 8), Image.BILINEAR).crop((2, 0, 10, 8))
    expected = (np.asarray(resized, np.float32) / 255 - 0.5) / 0.25
    np.testing.assert_allclose(data.inputs["input"][0], expected.transpose(2, 0, 1), atol=1e-6)


def test_bad_preprocess_spec():
    with pytest.raises(InputError, match="expected KEY=VALUE"):
        Preprocess.parse("size=3")


def test_empty_image_folder(tmp_path):
    with pytest.raises(InputError, match=r"no \.png/\.jpg/\.jpeg/\.bmp images found"):
        load_data(tmp_path, conv_net())
