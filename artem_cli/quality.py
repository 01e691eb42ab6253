"""What binarization costs: stylize with every mode, score every result with the fp32 network, and
compare the modes' Gram matrices with fp32's layer by layer (``artem compare``)."""
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import io, preprocess, weights
from .api import (DEFAULT_STYLE_LAYERS, Interruptible, Settings, check_content, check_distinct, check_style, network,
                  network_spec, score, spec_settings, split_spec, stylize)
from .errors import ArtemError
from .losses import gram
from .vgg import CONV_LAYERS, LAYER_NAMES, MODES, min_side


def label(spec):
    """A network spec (``api.network_spec``) as a short name for files and tables: a weights file by
    its stem."""
    mode, source, binary_from = split_spec(spec)
    return (f"{mode}-{Path(source).stem}" if source else mode) + (f"@{binary_from}" if binary_from else "")


def result_name(content_path, style_path, mode):
    """The file ``compare`` saves the result of ``mode`` for a pair under."""
    return f"{Path(content_path).stem}_{Path(style_path).stem}_{label(mode)}.png"


def check_compare(contents, styles, modes, size=256, calibrate=False, weights_path=None):
    """What ``compare`` needs of its inputs, before any work: fp32 among the modes (the baseline of
    every ratio) and, to ``calibrate``, another, no two modes, contents or styles of one name (their
    results and table rows would take each other's place), every image readable and large enough at
    ``size``, every binary network's file sound and learnt from the VGG16 of ``weights_path``."""
    if "fp32" not in modes:
        raise ArtemError("compare needs fp32 among the modes: its results are the baseline of every ratio")
    if calibrate and set(modes) == {"fp32"}:
        raise ArtemError("calibrate weighs the other networks' layers as fp32 weighs them: give a mode besides fp32")
    for what, names in (("modes", [label(m) for m in modes]), ("content images", [Path(p).stem for p in contents]),
                        ("style images", [Path(p).stem for p in styles])):
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ArtemError(f"two of the {what} have the name {twice[0]!r}, which would name their results alike")
    results = {}
    for run in ((c, s, m) for c in contents for s in styles for m in modes):  # names joined by "_": a_b, c and a, b_c
        other = results.setdefault(result_name(*run), run)
        if other != run:
            raise ArtemError(f"the results of '{other[0]}' after '{other[1]}' and of '{run[0]}' after '{run[1]}' "
                             f"would have one name, {result_name(*run)!r}; rename one image")
    settings = Settings(size=size)
    for path in contents:
        check_content(io.read_image(path, "content image")[0], settings, style_scale_advice=False)  # compare has none
    for path in styles:
        check_style(io.read_image(path, "style image")[0], settings)
    vgg_path = weights.locate(weights_path)
    check_distinct({mode: spec_settings(mode, vgg_path, size=size) for mode in modes})


def compare(contents, styles, out_dir, size=256, iterations=100, modes=MODES, calibrate=False, weights_path=None,
            progress=None, interruptible=None):
    """Stylize every (content, style) pair of image files with every network of ``modes`` (specs
    as ``api.network_spec`` takes them: bwn and xnor are the trained networks, bwn:untrained the
    XNOR-Net binarization of fp32); save each result in ``out_dir`` and score it with the fp32
    network. Returns one row per result. A run interrupted (``interruptible``, as for ``stylize``)
    raises ``KeyboardInterrupt``: a half-optimized result must not be scored as a whole one."""
    check_compare(contents, styles, modes, size, calibrate, weights_path)
    out_dir = Path(out_dir)
    rows = []
    for content_path in contents:
        content, alpha = io.read_image(content_path, "content image")  # kept in each result, as stylize keeps it
        for style_path in styles:
            style, _ = io.read_image(style_path, "style image")
            for mode in modes:
                spec = network_spec(mode)  # calibrate: the binarized networks' layers weighed as fp32 weighs them
                settings = Settings(size=size, iterations=iterations, calibrate=calibrate and spec["mode"] != "fp32", **spec)
                result = stylize(content, [style], settings, weights_path=weights_path, interruptible=interruptible)
                if result.interrupted or (interruptible is not None and interruptible.requested):
                    raise KeyboardInterrupt
                name = result_name(content_path, style_path, mode)
                shown = None if alpha is None else preprocess.resize(alpha, result.image.shape[1:])
                io.write_image(out_dir / name, result.image, shown, overwrite=True)
                saved = io.quantize(result.image)
                losses = score(saved, content, [style], Settings(size=size), weights_path=weights_path)
                row = {"content_image": Path(content_path).stem, "style_image": Path(style_path).stem, "mode": label(mode),
                       "file": name, "seconds": result.seconds, "iterations": result.iterations,  # the optimization's
                       **{f"{k}_loss": v for k, v in losses.items()}}
                rows.append(row)
                if progress is not None:
                    progress(row)
    return rows


LABEL = 20  # pixels of a grid's text lines


def grid(rows, contents, path, cell=160):
    """One row per (content, style) pair, named above it ("content x style": Pillow's built-in font
    has no multiplication sign): the content, then the result of each network, named at the top of
    its column. The style images stay out, so that the grid can be shared where the paintings may
    not be copied."""
    out_dir = Path(path).parent
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    results = {(r["content_image"], r["style_image"], r["mode"]): out_dir / r["file"] for r in rows}
    pairs = list(dict.fromkeys((c, s) for c, s, _ in results))
    sources = {Path(p).stem: p for p in contents}
    canvas = Image.new("RGB", (cell * (1 + len(modes)), LABEL + len(pairs) * (LABEL + cell)), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=13)
    for j, name in enumerate(["content", *modes]):
        draw.text((j * cell + cell // 2, LABEL // 2), name, fill="black", font=font, anchor="mm")
    for i, (c, s) in enumerate(pairs):
        top = LABEL + i * (LABEL + cell)
        draw.text((4, top + LABEL // 2), f"{c} x {s}", fill="black", font=font, anchor="lm")
        for j, f in enumerate([sources[c], *(results[c, s, m] for m in modes)]):
            img = io.to_pil(io.read_image(f)[0])  # as artem reads it: turned as EXIF says, 16 bits and floats scaled
            scale = cell / max(img.size)  # fitted to the cell, larger or smaller
            img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)
            canvas.paste(img, (j * cell + (cell - img.width) // 2, top + LABEL + (cell - img.height) // 2))
    io.save_image(path, canvas, "PNG")


def table(rows):
    """A Markdown table of the fp32 scores, and each mode's geometric-mean ratio to fp32's."""
    lines = ["| content | style | mode | fp32 style loss | fp32 content loss | optimization, s |",
             "| --- | --- | --- | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['content_image']} | {r['style_image']} | {r['mode']} | {r['style_loss']:.4g} "
                     f"| {r['content_loss']:.4g} | {r['seconds']:.1f} |")
    lines += ["", "| mode | style loss / fp32's (geometric mean) | content loss / fp32's |", "| --- | ---: | ---: |"]
    base = {(r["content_image"], r["style_image"]): r for r in rows if r["mode"] == "fp32"}
    for mode in dict.fromkeys(r["mode"] for r in rows):
        pairs = [(r, b) for r in rows if r["mode"] == mode
                 for b in [base.get((r["content_image"], r["style_image"]))] if b is not None]
        if pairs:
            style, content = (_ratio([(r[key], b[key]) for r, b in pairs]) for key in ("style_loss", "content_loss"))
            lines.append(f"| {mode} | {style} | {content} |")
    return "\n".join(lines) + "\n"


def _ratio(pairs):
    """The geometric mean of value / fp32's over the (value, fp32's) ``pairs`` where fp32's is not 0
    (a loss fp32 brought to 0, as a flat image's content loss, has no ratio); "n/a" where none is."""
    kept = [value / base for value, base in pairs if base > 0]
    if not kept:
        return "n/a"
    with np.errstate(divide="ignore"):  # a value of 0: the mean is 0
        return f"{np.exp(np.log(kept).mean()):.3g}"


def fidelity(images, size=256, modes=("bwn", "xnor", "random"), layers=DEFAULT_STYLE_LAYERS, weights_path=None):
    """Mean cosine similarity between each mode's Gram matrices and fp32's, per style layer, over
    ``images`` (files): where binarization destroys the features the style loss sees."""
    vgg_path = weights.locate(weights_path)
    w = weights.load(vgg_path)
    names = [name for name, _ in layers]
    nets = {mode: network(spec_settings(mode, vgg_path), w) for mode in ("fp32", *modes)}
    sums = {mode: np.zeros(len(names)) for mode in modes}
    for path in images:
        rgb, _ = io.read_image(path)
        x = preprocess.to_vgg(preprocess.resize(rgb, preprocess.scaled_shape(rgb.shape, size)))
        reference = nets["fp32"].forward(x, names)
        for mode in modes:
            features = nets[mode].forward(x, names)
            for i, name in enumerate(names):
                a, b = gram(reference[name]).ravel(), gram(features[name]).ravel()
                sums[mode][i] += float(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30)
    return {label(mode): dict(zip(names, (s / len(images)).tolist())) for mode, s in sums.items()}


def fidelity_table(values):
    if not values:
        return "(no binary or random modes compared: no fidelity to fp32 to report)\n"
    names = list(next(iter(values.values())))
    lines = ["| mode | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    lines += [f"| {mode} | " + " | ".join(f"{v:.3f}" for v in row.values()) + " |" for mode, row in values.items()]
    return "\n".join(lines) + "\n"


def visualize(layer, channels, mode="fp32", size=128, steps=100, lr=4.0, tv_weight=0.05, seed=0, weights_path=None,
              progress=None, interruptible=None):
    """Images that maximally activate ``channels`` of ``layer``: gradient ascent on the mean
    activation (before the ReLU, for a ReLU layer) from small noise, with Adam and a little TV
    smoothing, pixels kept in range. The seed used this to see what binarization does to the
    features. Returns RGB float32 (3, H, W) each. A signal recorded in ``interruptible`` (an
    ``api.Interruptible``) stops it before its next step: ``KeyboardInterrupt``."""
    from .losses import tv_loss, within_range
    from .optim import Adam, plain

    asked = layer
    if layer.startswith("relu"):  # ascend the convolution's output: a ReLU's zeros pass no gradient
        layer = "conv" + layer[4:]
    need = min_side(layer)
    if size < need:
        raise ArtemError(f"{asked} is empty at {size} px (it needs at least {need} px); use a larger --size")
    count = [cout for name, _, cout in CONV_LAYERS if LAYER_NAMES.index(name) <= LAYER_NAMES.index(layer)][-1]
    if max(channels) >= count:
        raise ArtemError(f"{asked} has {count} channels (0-{count - 1}); channel {max(channels)} does not exist")
    vgg_path = weights.locate(weights_path)
    # a first binary convolution past the layer shown is refused: the images would be fp32's
    settings = spec_settings(mode, vgg_path, "show a deeper --layer", content_layers=((asked, 1.0),),
                             style_layers=((asked, 1.0),))
    net = network(settings, weights.load(vgg_path))
    low, high = preprocess.valid_range()
    rng = np.random.default_rng(seed)
    images, interruptible = [], interruptible or Interruptible()
    for ch in channels:

        def activation(x):
            out = net.forward(x, [layer])[layer]
            grad = np.zeros_like(out)
            grad[ch] = -1.0 / out[ch].size
            tv, tv_grad = tv_loss(x)
            return -float(out[ch].mean()) + tv_weight * tv, net.backward({layer: grad}) + tv_weight * tv_grad

        def shown(x):  # the loss of the image as it can be shown
            return within_range(activation, x, low, high)

        x = preprocess.to_vgg(np.full((3, size, size), 0.5, np.float32)) + rng.standard_normal((3, size, size), dtype=np.float32) * 8
        for x, _ in Adam(plain(interruptible.before(shown)), x, lr=lr).run(steps):
            pass
        images.append(np.clip(preprocess.from_vgg(np.clip(x, low, high)), 0, 1))
        if progress is not None:
            progress(ch)
    return images


def tile(images, columns=4):
    """Images (3, H, W) of one size in a grid with 2-pixel white gutters, as RGB (3, H', W')."""
    rows = -(-len(images) // columns)
    _, h, w = images[0].shape
    out = np.ones((3, rows * (h + 2) - 2, min(columns, len(images)) * (w + 2) - 2), np.float32)
    for k, img in enumerate(images):
        r, c = divmod(k, columns)
        out[:, r * (h + 2) : r * (h + 2) + h, c * (w + 2) : c * (w + 2) + w] = img
    return out
