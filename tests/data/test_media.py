from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from contrastkit.data.arrays import features_shape, read_features, read_sequence
from contrastkit.data.images import check_image, read_image
from contrastkit.data.media import MediaError, ReadOptions
from contrastkit.data.video import read_clip, read_video


def test_image_npy_scaling_resize_and_normalisation(tmp_path: Path) -> None:
    np.save(tmp_path / "u8.npy", np.full((4, 4), 255, dtype=np.uint8))
    np.save(tmp_path / "f.npy", np.zeros((4, 4, 3), dtype=np.float32))
    white = read_image(tmp_path / "u8.npy", size=8, channels=3)
    assert white.shape == (3, 8, 8) and torch.allclose(white, torch.ones(3, 8, 8))
    black = read_image(tmp_path / "f.npy", size=2, channels=1)
    assert black.shape == (1, 2, 2) and torch.allclose(black, -torch.ones(1, 2, 2))


def test_png_reads_and_resizes(media: Path) -> None:
    image = read_image(media / "a.png", size=16, channels=1)
    assert image.shape == (1, 16, 16) and image.min() >= -1 and image.max() <= 1
    assert read_image(media / "a.png", size=5, channels=3).shape == (3, 5, 5)


def test_broken_and_missing_images(media: Path) -> None:
    with pytest.raises(MediaError, match="cannot decode image"):
        check_image(media / "broken.png")
    with pytest.raises(MediaError, match="cannot decode image"):
        read_image(media / "broken.png", 8, 1)
    with pytest.raises(MediaError, match="file not found"):
        read_image(media / "nope.png", 8, 1)


def test_clip_sources_sample_frames_uniformly(media: Path) -> None:
    ramp = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((5, 4, 4), np.float32) / 4
    np.save(media / "ramp.npy", ramp)
    clip = read_clip(media / "ramp.npy", frames=3, size=4, channels=1)
    # linspace(0, 4, 3) -> frames 0, 2, 4 -> values 0, .5, 1 -> normalised -1, 0, 1
    assert torch.allclose(clip[:, 0, 0, 0], torch.tensor([-1.0, 0.0, 1.0]))
    for name in ("clip.npy", "clip.npz", "frames"):
        assert read_clip(media / name, frames=4, size=8, channels=1).shape == (4, 1, 8, 8)


def test_multiview_pads_and_masks(media: Path) -> None:
    opts = ReadOptions(video_frames=2, video_size=4, max_views=3)
    video, mask = read_video((media / "clip.npy", media / "frames"), opts)
    assert video.shape == (3, 2, 1, 4, 4) and mask.tolist() == [True, True, False]
    assert video[2].abs().sum() == 0
    single, none = read_video((media / "clip.npy", media / "frames"), ReadOptions(max_views=1))
    assert single.shape == (8, 1, 32, 32) and none is None


def test_dicom_cine(tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    frames = np.stack([np.full((6, 6), v, dtype=np.uint16) for v in (0, 2047, 4095)])
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.12.1"  # X-ray angiographic image
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
    )
    ds.Rows, ds.Columns, ds.NumberOfFrames = 6, 6, 3
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = frames.tobytes()
    ds.save_as(tmp_path / "cine.dcm", enforce_file_format=True)
    clip = read_clip(tmp_path / "cine.dcm", frames=3, size=6, channels=1)
    # 12 stored bits: 4095 is white, 2047 is mid-grey.
    assert torch.allclose(
        clip[:, 0, 0, 0], torch.tensor([-1.0, 2047 / 4095 * 2 - 1, 1.0]), atol=1e-5
    )


def test_mp4_via_pyav(tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    with av.open(str(tmp_path / "c.mp4"), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        for t in range(6):
            frame = av.VideoFrame.from_ndarray(
                np.full((16, 16, 3), 40 * t, np.uint8), format="rgb24"
            )
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    clip = read_clip(tmp_path / "c.mp4", frames=3, size=8, channels=3)
    assert clip.shape == (3, 3, 8, 8)
    assert clip[0].mean() < clip[-1].mean()  # brightness ramps up over time
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 64)
    with pytest.raises(MediaError, match="cannot decode video"):
        read_clip(tmp_path / "bad.mp4", 2, 8, 1)


def test_sequence_crop_and_rank_check(media: Path) -> None:
    assert read_sequence(media / "seq5.npy", max_length=3).shape == (3, 4, 2)
    with pytest.raises(MediaError, match="T x J x C"):
        read_sequence(media / "seq2d.npy", 8)


def test_features_npy_and_safetensors(media: Path, tmp_path: Path) -> None:
    assert read_features(media / "feat.npy").shape == (2, 6)
    assert features_shape(media / "feat.safetensors") == (3, 6)
    assert read_features(media / "feat.safetensors").shape == (3, 6)
    np.save(tmp_path / "f3.npy", np.zeros((2, 2, 2), np.float32))
    with pytest.raises(MediaError, match="F or N x F"):
        read_features(tmp_path / "f3.npy")
