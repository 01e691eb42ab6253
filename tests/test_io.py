"""Reading every kind of image a user may bring, and writing without ever losing a file."""
import os
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artem_cli import io
from artem_cli.errors import ArtemError
from conftest import EXAMPLES, SHARED_IMAGES


def save(tmp_path, name, img, **kw):
    path = tmp_path / name
    img.save(path, **kw)
    return path


def gradient_rgb(h=6, w=8):
    a = np.zeros((h, w, 3), np.uint8)
    a[..., 0] = np.arange(w) * 30
    a[..., 1] = np.arange(h)[:, None] * 40
    a[..., 2] = 200
    return a


def test_rgb_png_reads_as_float_chw(tmp_path):
    a = gradient_rgb()
    rgb, alpha = io.read_image(save(tmp_path, "a.png", Image.fromarray(a)))
    assert rgb.dtype == np.float32 and rgb.shape == (3, 6, 8) and alpha is None
    np.testing.assert_allclose(rgb, a.transpose(2, 0, 1) / 255, atol=1e-7)


def test_a_photo_is_read_without_a_second_float_copy_of_it(tmp_path):
    """The float planes filled one by one from the 8-bit pixels: 1.25x the result's bytes at the peak of
    what NumPy holds (the float copy divided, then transposed, held 2x: a 48-megapixel photo at --size 32
    took 2.5 GB), the same numbers."""
    import tracemalloc

    pixels = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "p.png")
    tracemalloc.start()
    try:
        rgb, alpha = io.read_image(tmp_path / "p.png")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert alpha is None and rgb.dtype == np.float32 and rgb.flags.c_contiguous
    assert np.array_equal(rgb, (pixels.astype(np.float32) / 255.0).transpose(2, 0, 1))
    assert peak < 1.5 * rgb.nbytes, peak / rgb.nbytes


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "LA", "RGBA", "I;16", "1"])
def test_modes_become_rgb(tmp_path, mode):
    base = Image.fromarray(gradient_rgb())
    if mode == "I;16":
        img = Image.fromarray((np.arange(48).reshape(6, 8) * 1365).astype(np.uint16))
    else:
        img = base.convert(mode)
    name = "x.tif" if mode == "CMYK" else "x.png"
    rgb, alpha = io.read_image(save(tmp_path, name, img))
    assert rgb.shape == (3, 6, 8) and rgb.dtype == np.float32
    assert 0 <= rgb.min() and rgb.max() <= 1
    assert (alpha is not None) == (mode in ("LA", "RGBA"))
    if mode == "I;16":  # 16-bit values keep their full range and precision
        np.testing.assert_allclose(rgb[0].ravel(), np.arange(48) * 1365 / 65535, atol=1e-6)
    # the colours are Pillow's conversion of the same image (greys in every channel, a palette's own
    # colours, CMYK back to RGB), not merely some values in range
    if mode != "I;16":
        expected = np.asarray(img.convert("RGB"), np.float32).transpose(2, 0, 1) / 255
        np.testing.assert_allclose(rgb, expected, atol=1e-6)
        if mode in ("L", "LA", "1"):
            assert (rgb[0] == rgb[1]).all() and (rgb[1] == rgb[2]).all()
        if mode in ("RGB", "RGBA", "CMYK"):
            np.testing.assert_allclose(rgb, gradient_rgb().transpose(2, 0, 1) / 255, atol=1 / 255 + 1e-6)


@pytest.mark.parametrize("top,scale", [(1.0, 1.0), (1.02, 1.0), (255.0, 255.0), (65535.0, 65535.0)])
def test_float_images_in_0_1_or_in_integer_ranges(tmp_path, top, scale):
    """0..1 (a little overshoot is clipped, not taken for 8 bits), or the ranges of 8 or 16 bits."""
    values = np.linspace(0, top, 48, dtype=np.float32).reshape(6, 8)
    rgb, _ = io.read_image(save(tmp_path, "f.tif", Image.fromarray(values, "F")))
    np.testing.assert_allclose(rgb[0], np.clip(values / scale, 0, 1), atol=1e-6)
    # a pixel that is no number (NaN: black; an infinity: black or white) does not change the range of the others
    odd = values.copy()
    odd[0, :3] = np.nan, np.inf, -np.inf
    rgb, _ = io.read_image(save(tmp_path, "odd.tif", Image.fromarray(odd, "F")))
    np.testing.assert_allclose(rgb[0].ravel()[3:], np.clip(values / scale, 0, 1).ravel()[3:], atol=1e-6)
    assert list(rgb[0, 0, :3]) == [0.0, 1.0, 0.0]


def test_palette_transparency_and_alpha_values(tmp_path):
    a = np.dstack([gradient_rgb(), np.full((6, 8), 128, np.uint8)])
    rgb, alpha = io.read_image(save(tmp_path, "a.png", Image.fromarray(a, "RGBA")))
    np.testing.assert_allclose(alpha, 128 / 255)
    p = Image.fromarray(gradient_rgb()).convert("P")
    index = np.asarray(p)
    clear = int(index[0, 0])  # the top-left pixel's palette entry is the transparent one
    p.info["transparency"] = clear
    _, alpha = io.read_image(save(tmp_path, "p.png", p, transparency=clear))
    assert 0 < (index == clear).sum() < index.size  # some pixels transparent, not all
    np.testing.assert_array_equal(alpha, (index != clear).astype(np.float32))


def test_exif_orientation_is_applied(tmp_path):
    img = Image.fromarray(gradient_rgb(6, 8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    rgb, _ = io.read_image(save(tmp_path, "r.jpg", img, exif=exif.tobytes(), quality=100))
    assert rgb.shape == (3, 8, 6)
    # displayed turned clockwise: the stored top-left corner is now the top-right one
    stored = np.asarray(Image.open(tmp_path / "r.jpg").convert("RGB"), np.float32) / 255
    np.testing.assert_allclose(rgb.transpose(1, 2, 0), np.rot90(stored, k=-1), atol=1e-6)


@pytest.mark.parametrize("mode", ["L", "I;16", "RGB", "RGBA"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_an_uncompressed_tiffs_orientation_is_applied_whatever_its_mode(tmp_path, mode, orientation):
    """An uncompressed TIFF opened by name is mapped into memory by Pillow (13), which then skipped
    the orientations that swap its sides (5 to 8) in greyscale, 16-bit and RGBA files: sideways."""
    a = gradient_rgb(6, 8)
    stored = {"L": Image.fromarray(a[..., 0]), "I;16": Image.fromarray(a[..., 0].astype(np.uint16) * 257),
              "RGB": Image.fromarray(a), "RGBA": Image.fromarray(np.dstack([a, a[..., :1]]))}[mode]
    assert stored.mode == mode
    path = save(tmp_path, "t.tif", stored, tiffinfo={0x0112: orientation})
    rgb, _ = io.read_image(path)
    exif = Image.Exif()
    exif[0x0112] = orientation  # as the same pixels in a PNG are turned
    reference, _ = io.read_image(save(tmp_path, "t.png", stored, exif=exif.tobytes()))
    assert rgb.shape == ((3, 8, 6) if orientation >= 5 else (3, 6, 8))
    np.testing.assert_array_equal(rgb, reference)


@pytest.mark.parametrize("mode", ["L", "I;16", "RGB"])
def test_a_png_that_marks_one_colour_transparent_keeps_it_as_alpha(tmp_path, mode):
    """A tRNS colour key (greyscale or RGB): the pixels of that colour are transparent, as a viewer
    shows them (they were painted opaque, the output without alpha)."""
    a = gradient_rgb(6, 8)
    key = {"L": 60, "I;16": 60 * 257, "RGB": (60, 80, 200)}[mode]
    stored = {"L": Image.fromarray(a[..., 0]), "I;16": Image.fromarray(a[..., 0].astype(np.uint16) * 257),
              "RGB": Image.fromarray(a)}[mode]
    assert stored.mode == mode
    rgb, alpha = io.read_image(save(tmp_path, "k.png", stored, transparency=key))
    clear = np.all(np.asarray(stored).reshape(6, 8, -1) == key, axis=-1)
    assert 0 < clear.sum() < clear.size
    np.testing.assert_array_equal(alpha, (~clear).astype(np.float32))
    plain, none = io.read_image(save(tmp_path, "p.png", stored))
    np.testing.assert_array_equal(rgb, plain)
    assert none is None
    _, alpha = io.read_image(save(tmp_path, "n.png", stored, transparency={"RGB": (1, 2, 3)}.get(mode, 1)))
    assert alpha is None  # a key no pixel has: no alpha


def test_a_16_bit_rgb_pngs_colour_key_marks_no_pixel_read_in_8_bits(tmp_path):
    """Pillow reads a 48-bit PNG in 8 bits and keeps its key in 16: (100, 50, 20) made the 8-bit
    (100, 50, 20) of (25600, 12800, 5120) transparent, and left the keyed pixel opaque. No alpha."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    pixels = struct.pack(">6H", 100, 50, 20, 25600, 12800, 5120)  # 2x1, 16 bits a channel
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 1, 16, 2, 0, 0, 0))
           + chunk(b"tRNS", struct.pack(">3H", 100, 50, 20)) + chunk(b"IDAT", zlib.compress(b"\x00" + pixels))
           + chunk(b"IEND", b""))
    (tmp_path / "wide.png").write_bytes(png)
    assert Image.open(tmp_path / "wide.png").info["transparency"] == (100, 50, 20)
    rgb, alpha = io.read_image(tmp_path / "wide.png")
    assert alpha is None and rgb.shape == (3, 1, 2)


def test_an_image_its_format_cannot_hold_is_one_artem_error(tmp_path):
    with pytest.raises(ArtemError, match=r"^cannot write '.*w\.jpg' as JPEG \("):
        io.write_image(tmp_path / "w.jpg", np.zeros((3, 1, 70000), np.float32))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["e.png", "e.webp"])
def test_exif_data_that_cannot_be_parsed_leaves_the_image_unturned(tmp_path, name):
    """Pillow reads the pixels; only its EXIF parser fails (the PNG was refused as "damaged or
    truncated")."""
    img = Image.fromarray(gradient_rgb(6, 8))
    plain, _ = io.read_image(save(tmp_path, "plain" + name[1:], img, **({"lossless": True} if name.endswith("webp") else {})))
    odd, _ = io.read_image(save(tmp_path, name, img, exif=b"garbage", **({"lossless": True} if name.endswith("webp") else {})))
    np.testing.assert_array_equal(odd, plain)


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (5, 4), c) for c in ("red", "blue")]
    path = tmp_path / "a.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    rgb, _ = io.read_image(path)
    assert rgb.shape == (3, 4, 5) and rgb[0].mean() > 0.9 and rgb[2].mean() < 0.1


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: p, "does not exist"),
        (lambda p: (p.mkdir(), p)[1], "is a folder"),
        (lambda p: (p.write_bytes(b""), p)[1], "empty file"),
        (lambda p: (p.write_text("hello, I am text"), p)[1], "not an image"),
        (lambda p: (p.write_bytes((EXAMPLES / "coffee.png").read_bytes()[:5000]), p)[1], "damaged or truncated"),
        (lambda p: Path("/proc/self/status"), "is not an image file Pillow can read"),  # size 0, text in it
    ],
    ids=["missing", "folder", "empty", "text", "truncated", "proc"],
)
def test_bad_files_are_one_clear_error(tmp_path, make, message):
    path = make(tmp_path / "bad.png")
    with pytest.raises(ArtemError, match=f"^content image '{path}' .*{message}"):
        io.read_image(path, "content image")


def test_truncated_jpeg_is_an_error(tmp_path):
    good = save(tmp_path, "g.jpg", Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(good.read_bytes()[:600])
    with pytest.raises(ArtemError, match="damaged or truncated"):
        io.read_image(bad)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(io, "MAX_PIXELS", 100)
    path = save(tmp_path, "big.png", Image.new("RGB", (20, 20)))
    with pytest.raises(ArtemError, match="too large"):
        io.read_image(path)


def test_write_round_trip_with_alpha(tmp_path):
    rgb = np.random.default_rng(0).random((3, 5, 7)).astype(np.float32)
    alpha = np.linspace(0, 1, 35, dtype=np.float32).reshape(5, 7)
    path = tmp_path / "o.png"
    io.write_image(path, rgb, alpha)
    back, back_alpha = io.read_image(path)
    np.testing.assert_allclose(back, io.quantize(rgb), atol=1e-7)
    np.testing.assert_allclose(back_alpha, np.rint(alpha * 255) / 255, atol=1e-7)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".artem-")]


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".tif", ".webp", ".bmp"])
def test_formats_from_suffix(tmp_path, suffix):
    path = tmp_path / f"o{suffix}"
    io.write_image(path, np.full((3, 4, 4), 0.5, np.float32))
    assert Image.open(path).format == io.WRITE_FORMATS[suffix]


def test_existing_output_is_never_replaced_without_overwrite(tmp_path):
    path = tmp_path / "o.png"
    path.write_bytes(b"precious")
    with pytest.raises(ArtemError, match="already exists"):
        io.write_image(path, np.zeros((3, 2, 2), np.float32))
    assert path.read_bytes() == b"precious"
    io.write_image(path, np.zeros((3, 2, 2), np.float32), overwrite=True)
    assert Image.open(path).size == (2, 2)


def test_bad_outputs(tmp_path, monkeypatch):
    with pytest.raises(ArtemError, match="output format"):
        io.check_writable(tmp_path / "o.xyz")
    with pytest.raises(ArtemError, match="does not exist"):
        io.check_writable(tmp_path / "nope" / "o.png")
    with pytest.raises(ArtemError, match="is a folder"):
        io.check_writable(tmp_path)
    # permission bits do not stop root (CI runs as root), so the folder is made unwritable for os.access
    monkeypatch.setattr(io.os, "access", lambda path, mode: False)
    with pytest.raises(ArtemError, match="not writable"):
        io.check_writable(tmp_path / "o.png")


def test_failed_write_leaves_nothing_behind(tmp_path):
    path = tmp_path / "o.png"
    path.write_bytes(b"old")

    def explode(f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(ArtemError, match="No space left"):
        io.atomic_write(path, explode)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]


def test_unicode_paths(tmp_path):
    path = tmp_path / "café ☕.png"
    io.write_image(path, np.full((3, 3, 3), 0.25, np.float32))
    rgb, _ = io.read_image(path)
    assert rgb.shape == (3, 3, 3)


def test_an_input_folder_inside_the_output_folder_keeps_its_images(tmp_path):
    """The output folder's files are never inputs: an output folder inside the input folder is left
    out, and so is a link into it; an input folder inside the output folder is not (all its files lie
    there too), though a link from it to a result beside it is."""
    project = tmp_path / "project"
    (project / "photos").mkdir(parents=True)
    for name in ("b.png", "a.png"):
        (project / "photos" / name).write_bytes(b"")
    (project / "result.png").write_bytes(b"")
    (project / "photos" / "link.png").symlink_to(project / "result.png")
    assert io.list_images(project / "photos", skip=project) == [Path("a.png"), Path("b.png")]
    (project / "photos" / "styled").mkdir()
    (project / "photos" / "styled" / "c.png").write_bytes(b"")
    (project / "photos" / "c.png").symlink_to(project / "photos" / "styled" / "c.png")
    assert io.list_images(project / "photos", recursive=True, skip=project / "photos" / "styled") == [
        Path("a.png"), Path("b.png"), Path("link.png")]


def test_a_folder_lists_every_photo_format_pillow_reads(tmp_path):
    """A batch took .jpg but not .jfif or .jpe (JPEG too), nor .ppm, .tga or .jp2, which stylize reads:
    they were left out unsaid. Every suffix listed is one Pillow reads; files of other suffixes, or of
    none, are not images to a listing."""
    Image.init()
    readers = Image.registered_extensions()
    assert all(readers.get(suffix) in Image.OPEN for suffix in io.IMAGE_SUFFIXES)
    image = Image.new("RGB", (20, 16), (200, 100, 50))
    written = {".jfif": "JPEG", ".jpe": "JPEG", ".JPE": "JPEG", ".ppm": "PPM", ".pgm": "PPM", ".tga": "TGA",
               ".jp2": "JPEG2000", ".qoi": "QOI", ".apng": "PNG"}
    for k, (suffix, fmt) in enumerate(written.items()):
        (image.convert("L") if suffix == ".pgm" else image).save(tmp_path / f"f{k}{suffix}", format=fmt)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "k").write_bytes((tmp_path / "f0.jfif").read_bytes())  # no suffix: not taken for one
    listed = io.list_images(tmp_path)
    assert listed == [Path(f"f{k}{suffix}") for k, suffix in enumerate(written)]
    for name in listed:
        assert io.read_image(tmp_path / name)[0].shape == (3, 16, 20)


def test_names_natural_order_calls_equal_are_in_the_order_of_their_characters(tmp_path, monkeypatch):
    """frame1 and frame01 (or A and a) sort equal as numbers and words: the order of their characters
    decides, not the folder's listing (on many file systems the order files were made in), so two
    copies of a folder list the same frames in the same order."""
    names = ["frame01.png", "frame1.png", "b.png", "B.png", "b1²2.png"]  # ² is a digit to str.isdigit, not to int
    for name in names:
        (tmp_path / name).write_bytes(b"")
    walk = os.walk
    for listing in (names, names[::-1]):  # as the folder lists them
        monkeypatch.setattr(io.os, "walk", lambda top, **kw: ((t, f, sorted(n, key=listing.index))
                                                              for t, f, n in walk(top, **kw)))
        assert io.list_images(tmp_path) == [Path(n) for n in ("b1²2.png", "B.png", "b.png", "frame01.png", "frame1.png")]


def test_a_colour_profile_other_than_srgb_is_converted_to_srgb(tmp_path):
    """Adobe RGB (1998) numbers read as sRGB are duller colours than the file's: each pixel is read as
    the profile says. An sRGB profile, none, or one littlecms cannot read: the numbers as they are."""
    from PIL import ImageCms

    adobe = Image.open(SHARED_IMAGES / "rocket.jpg").info["icc_profile"]  # Adobe RGB (1998)
    pixels = gradient_rgb()
    tagged = save(tmp_path, "adobe.png", Image.fromarray(pixels), icc_profile=adobe)
    rgb, _ = io.read_image(tagged)
    expected = ImageCms.profileToProfile(Image.fromarray(pixels), ImageCms.ImageCmsProfile(BytesIO(adobe)),
                                         ImageCms.createProfile("sRGB"), outputMode="RGB")
    np.testing.assert_array_equal(rgb, np.asarray(expected, np.float32).transpose(2, 0, 1) / 255)
    assert np.abs(rgb - pixels.transpose(2, 0, 1) / 255).max() > 0.05  # not the numbers as they were
    srgb = Image.open(EXAMPLES / "chelsea.png").info["icc_profile"]
    for profile in (srgb, b"not a profile", None):
        kept = save(tmp_path, "kept.png", Image.fromarray(pixels), **({"icc_profile": profile} if profile else {}))
        np.testing.assert_array_equal(io.read_image(kept)[0], pixels.transpose(2, 0, 1).astype(np.float32) / 255)
    palette = save(tmp_path, "adobe_p.png", Image.fromarray(pixels).convert("P"), icc_profile=adobe)
    as_rgb = np.asarray(Image.open(palette).convert("RGB"))  # the palette's colours, then the profile's conversion
    expected_p = ImageCms.profileToProfile(Image.fromarray(as_rgb), ImageCms.ImageCmsProfile(BytesIO(adobe)),
                                           ImageCms.createProfile("sRGB"), outputMode="RGB")
    np.testing.assert_array_equal(io.read_image(palette)[0], np.asarray(expected_p, np.float32).transpose(2, 0, 1) / 255)
    rgba = np.dstack([pixels, np.full(pixels.shape[:2], 128, np.uint8)])
    rgb_a, alpha = io.read_image(save(tmp_path, "adobe_a.png", Image.fromarray(rgba, "RGBA"), icc_profile=adobe))
    np.testing.assert_array_equal(rgb_a, rgb)
    assert np.all(alpha == np.float32(128 / 255))


def test_arguments_that_are_no_path_or_no_image_are_one_clear_error(tmp_path):
    """What a library caller can get wrong: a path that is no path, patterns given as one string (it
    was read letter by letter: "*" matched everything), arrays that are no RGB image in 0..1 (8-bit
    pixels were written nearly all white)."""
    rgb = gradient_rgb().transpose(2, 0, 1).astype(np.float32) / 255
    for call, message in ((lambda: io.read_image(None), "the image must be a path (a string or a pathlib.Path), not NoneType"),
                          (lambda: io.read_image(3, "content image"), "the content image must be a path"),
                          (lambda: io.write_image(None, rgb), "the output must be a path"),
                          (lambda: io.list_images(None), "the input folder must be a path"),
                          (lambda: io.list_images(tmp_path, include="coffee*"), "include must be a list of glob patterns "
                                                                                "(['coffee*'] for one)"),
                          (lambda: io.list_images(tmp_path, exclude=None), "exclude must be a list of glob patterns"),
                          (lambda: io.write_image(tmp_path / "a.png", rgb.transpose(1, 2, 0)), "channels last"),
                          (lambda: io.write_image(tmp_path / "a.png", (rgb * 255).astype(np.uint8)), "holds uint8 values"),
                          (lambda: io.write_image(tmp_path / "a.png", rgb * 255), "values span"),
                          (lambda: io.write_image(tmp_path / "a.png", rgb[:, :0]), "is empty"),
                          (lambda: io.write_image(tmp_path / "a.png", rgb, rgb[0, :3]), "the alpha channel must be floats "
                                                                                       "of shape (6, 8)")):
        with pytest.raises(ArtemError) as e:
            call()
        assert message in str(e.value), str(e.value)
    assert not list(tmp_path.iterdir())
    io.write_image(tmp_path / "a.png", rgb, rgb[0])
    assert io.read_image(tmp_path / "a.png")[1].shape == (6, 8)
