"""What a request's image reference may name on the server (ume serve's media reader)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from PIL import Image

from ume.serve.service import RequestError, _image_bytes, decode_image_ref

pytestmark = pytest.mark.unit


@pytest.fixture
def png(tmp_path):
    p = tmp_path / "media" / "a.png"
    p.parent.mkdir()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(p)
    return p


def test_local_files_are_refused_without_an_allowed_folder(png):
    for ref in (str(png), f"file://{png}"):
        with pytest.raises(RequestError) as e:
            _image_bytes(ref, "input[0].image", ())
        assert e.value.status == 403 and "--allowed-local-media-path" in str(e.value)


def test_only_files_inside_the_allowed_folders_are_read(png, tmp_path):
    allowed = (png.parent.resolve(),)
    path, data = _image_bytes(f"file://{png}", "x", allowed)
    assert path == png and data == png.read_bytes()
    outside = tmp_path / "b.png"
    outside.write_bytes(png.read_bytes())
    for ref in (str(outside), f"{png.parent}/../b.png"):  # directly, or through '..'
        with pytest.raises(RequestError, match="outside the folders") as e:
            _image_bytes(ref, "x", allowed)
        assert e.value.status == 403
    link = png.parent / "link.png"
    link.symlink_to(outside)  # a link inside that leads out
    with pytest.raises(RequestError, match="outside the folders"):
        _image_bytes(str(link), "x", allowed)


def test_inline_images_need_no_folder_and_network_urls_are_refused(png, tmp_path):
    b64 = base64.b64encode(png.read_bytes()).decode()
    out = decode_image_ref(f"data:image/png;base64,{b64}", "x", tmp_path / "m")
    assert Path(out).read_bytes() == png.read_bytes()
    with pytest.raises(RequestError, match="no network URLs"):
        _image_bytes("https://example.com/a.png", "x", (png.parent,))
