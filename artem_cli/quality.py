"""What binarization costs: stylize with every mode, score every result with the fp32 network, and
compare the modes' Gram matrices with fp32's layer by layer (``artem compare``)."""
import time
from pathlib import Path

import numpy as np
from PIL import Image

from . import io, preprocess, weights
from .api import DEFAULT_STYLE_LAYERS, Settings, score, stylize
from .losses import gram
from .vgg import MODES, VGG16


def compare(contents, styles, out_dir, size=256, iterations=100, modes=MODES, weights_path=None, progress=None):
    """Stylize every (content, style) pair of image files in every mode; save each result in
    ``out_dir`` and score it with the fp32 network. Returns one row per result."""
    out_dir = Path(out_dir)
    rows = []
    for content_path in contents:
        content, _ = io.read_image(content_path, "content image")
        for style_path in styles:
            style, _ = io.read_image(style_path, "style image")
            for mode in modes:
                settings = Settings(size=size, iterations=iterations, mode=mode)
                start = time.perf_counter()
                result = stylize(content, [style], settings, weights_path=weights_path)
                seconds = time.perf_counter() - start
                name = f"{Path(content_path).stem}_{Path(style_path).stem}_{mode}.png"
                io.write_image(out_dir / name, result.image, overwrite=True)
                saved = io.quantize(result.image)
                losses = score(saved, content, [style], Settings(size=size), weights_path=weights_path)
                row = {"content_image": Path(content_path).stem, "style_image": Path(style_path).stem, "mode": mode,
                       "file": name, "seconds": seconds, "iterations": result.iterations,
                       **{f"{k}_loss": v for k, v in losses.items()}}
                rows.append(row)
                if progress is not None:
                    progress(row)
    return rows


def grid(rows, contents, path, cell=160):
    """One row per (content, style) pair: the content, then the result of each mode (the style
    images stay out, so that the grid can be shared where the paintings may not be copied)."""
    out_dir = Path(path).parent
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    results = {(r["content_image"], r["style_image"], r["mode"]): out_dir / r["file"] for r in rows}
    pairs = list(dict.fromkeys((c, s) for c, s, _ in results))
    sources = {Path(p).stem: p for p in contents}
    canvas = Image.new("RGB", (cell * (1 + len(modes)), cell * len(pairs)), "white")
    for i, (c, s) in enumerate(pairs):
        for j, f in enumerate([sources[c], *(results[c, s, m] for m in modes)]):
            img = Image.open(f).convert("RGB")
            img.thumbnail((cell, cell))
            canvas.paste(img, (j * cell + (cell - img.width) // 2, i * cell + (cell - img.height) // 2))
    io.atomic_write(path, lambda f: canvas.save(f, format="PNG"))


def table(rows):
    """A Markdown table of the fp32 scores, and each mode's geometric-mean ratio to fp32's."""
    lines = ["| content | style | mode | fp32 style loss | fp32 content loss | seconds |",
             "| --- | --- | --- | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['content_image']} | {r['style_image']} | {r['mode']} | {r['style_loss']:.4g} "
                     f"| {r['content_loss']:.4g} | {r['seconds']:.1f} |")
    lines += ["", "| mode | style loss / fp32's (geometric mean) | content loss / fp32's |", "| --- | ---: | ---: |"]
    base = {(r["content_image"], r["style_image"]): r for r in rows if r["mode"] == "fp32"}
    for mode in dict.fromkeys(r["mode"] for r in rows):
        ratios = [(r["style_loss"] / b["style_loss"], r["content_loss"] / b["content_loss"])
                  for r in rows if r["mode"] == mode
                  for b in [base.get((r["content_image"], r["style_image"]))] if b is not None]
        if ratios:
            style_ratio, content_ratio = np.exp(np.log(np.array(ratios)).mean(axis=0))
            lines.append(f"| {mode} | {style_ratio:.3g} | {content_ratio:.3g} |")
    return "\n".join(lines) + "\n"


def fidelity(images, size=256, modes=("bwn", "xnor", "random"), layers=DEFAULT_STYLE_LAYERS, weights_path=None):
    """Mean cosine similarity between each mode's Gram matrices and fp32's, per style layer, over
    ``images`` (files): where binarization destroys the features the style loss sees."""
    w = weights.load(weights.locate(weights_path))
    names = [name for name, _ in layers]
    nets = {mode: VGG16(w, mode=mode) for mode in ("fp32", *modes)}
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
    return {mode: dict(zip(names, (s / len(images)).tolist())) for mode, s in sums.items()}


def fidelity_table(values):
    names = list(next(iter(values.values())))
    lines = ["| mode | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    lines += [f"| {mode} | " + " | ".join(f"{v:.3f}" for v in row.values()) + " |" for mode, row in values.items()]
    return "\n".join(lines) + "\n"
