"""(d) Two-view augmentation: sslbench's batched TwoViews vs torchvision.transforms.v2 per image.

Issue 6, row d: at least 10x torchvision v2 per image (about 2,100 images/s
on the 2-core machine), and making the views takes at most 10% of a ``quick``
training step. "Images/s" counts source images, two views each.

The torchvision pipeline has the same ops as the method's ``ViewConfig``:
``RandomResizedCrop`` (same scale and ratio ranges), horizontal flip,
``ColorJitter`` (brightness, contrast; saturation and grayscale only for RGB)
applied with ``jitter_p``, Gaussian blur and solarisation when the recipe has
them, then ``Normalize`` with the dataset statistics; uint8 ``(C, H, W)``
tensors in, one image at a time (as a ``Dataset.__getitem__`` would).

The step share times a ``quick`` training step (forward, backward, optimiser,
channels-last, views made beforehand) of ``--method`` and reports
``views / (views + step)`` for both augmenters.

    python benchmarks/bench_augment.py                   # about 30 s
    python benchmarks/bench_augment.py --method byol     # a recipe with blur and solarisation
    python benchmarks/bench_augment.py --small           # seconds
"""

from __future__ import annotations

import sys
import time

import _common as C
import _train as T
import torch

from sslbench.method import ViewConfig
from sslbench.optim import build_optimizer


def tv2_pipeline(cfg: ViewConfig, mean: tuple[float, ...], std: tuple[float, ...], size: int, channels: int):
    """torchvision v2 transforms with the ops of ``cfg``, for one uint8 ``(C, H, W)`` image."""
    from torchvision.transforms import v2

    ops = [
        v2.RandomResizedCrop(size, scale=cfg.crop_scale, ratio=cfg.crop_ratio, antialias=True),
        v2.RandomHorizontalFlip(cfg.flip_p),
        v2.ToDtype(torch.float32, scale=True),
        v2.RandomApply(
            [v2.ColorJitter(brightness=cfg.brightness, contrast=cfg.contrast,
                            saturation=cfg.saturation if channels == 3 else None)], p=cfg.jitter_p),
    ]
    if channels == 3:
        ops.append(v2.RandomGrayscale(cfg.grayscale_p))
    if cfg.blur_p > 0:
        k = max(3, (int(0.1 * size) // 2) * 2 + 1)  # the kernel size of sslbench.augment.blur
        ops.append(v2.RandomApply([v2.GaussianBlur(k, sigma=cfg.blur_sigma)], p=cfg.blur_p))
    if cfg.solarize_p > 0:
        ops.append(v2.RandomSolarize(0.5, p=cfg.solarize_p))
    ops.append(v2.Normalize(list(mean), list(std)))
    return v2.Compose(ops)


def main() -> int:
    p = C.parser(__doc__.split("\n\n")[0])
    p.add_argument("--method", default="vicreg", help="whose view recipe and quick model")
    p.add_argument("--tv-images", type=int, default=None, help="images through torchvision (default 2048, small 128)")
    p.add_argument("--batches", type=int, default=None, help="batches through TwoViews (default 20, small 3)")
    p.add_argument("--train-steps", type=int, default=None, help="timed training steps (default 10, small 2)")
    args = p.parse_args()
    threads = C.setup_threads(args.threads)
    tv_n = args.tv_images or (128 if args.small else 2048)
    n_batches = args.batches or (3 if args.small else 20)
    train_steps = args.train_steps or (2 if args.small else 10)
    repeats = args.repeats or (1 if args.small else 3)
    s = T.setup(args.method, args.small, steps=max(n_batches, train_steps + 2))
    batch = s.cfg.batch_size
    images = s.data.train_images

    rep = C.Report("d_augment", f"two-view augmentation, batched TwoViews vs torchvision v2 per image ({args.method})",
                   args.small)
    rep.params = {"method": args.method, "views": [str(v) for v in s.views.views], "batch": batch,
                  "tv_images": tv_n, "twoviews_batches": n_batches, "train_steps": train_steps, "repeats": repeats,
                  "threads": threads, "image": tuple(images.shape[1:])}
    C.header(rep, args, threads)

    gen = torch.Generator().manual_seed(args.seed)

    def ours() -> tuple[torch.Tensor, torch.Tensor]:
        out = None
        for i in range(n_batches):
            out = s.views(images[i * batch : (i + 1) * batch], gen)
        return out

    pipes = [tv2_pipeline(v, s.data.mean, s.data.std, s.data.image_size, s.data.channels) for v in s.views.views]
    torch.manual_seed(args.seed)

    def theirs() -> tuple[torch.Tensor, torch.Tensor]:
        a, b = [], []
        for i in range(tv_n):
            img = images[i]
            a.append(pipes[0](img))
            b.append(pipes[1](img))
        return torch.stack(a), torch.stack(b)

    ours_t, theirs_t = [], []
    ours_out = theirs_out = None
    ours()  # warm-up
    for _ in range(repeats):
        t, ours_out = C.timed(ours)
        ours_t += t
        t, theirs_out = C.timed(theirs)
        theirs_t += t
    ours_ips = n_batches * batch / C.best(ours_t)
    theirs_ips = tv_n / C.best(theirs_t)
    rep.check("same view shape and dtype",
              ours_out[0].shape[1:] == theirs_out[0].shape[1:] and ours_out[0].dtype == theirs_out[0].dtype,
              f"sslbench {tuple(ours_out[0].shape[1:])} {ours_out[0].dtype}, torchvision {tuple(theirs_out[0].shape[1:])} "
              f"{theirs_out[0].dtype}")

    # One quick training step, views made beforehand.
    model = T.prepare(s.model(args.seed))
    step = T.bare_step_fn(model, build_optimizer(model, s.cfg))
    prepared = []
    for i in range(train_steps + 2):
        v1, v2 = s.views(images[i * batch : (i + 1) * batch], gen)
        prepared.append((v1.contiguous(memory_format=torch.channels_last), v2.contiguous(memory_format=torch.channels_last)))
    step_t = []
    for _ in range(repeats):
        for v1, v2 in prepared[:2]:
            step(v1, v2)  # warm-up
        t0 = time.perf_counter()
        for v1, v2 in prepared[2:]:
            step(v1, v2)
        step_t.append((time.perf_counter() - t0) / train_steps)
    t_step = C.best(step_t)
    t_ours = batch / ours_ips
    t_theirs = batch / theirs_ips
    share_ours = t_ours / (t_ours + t_step)
    share_theirs = t_theirs / (t_theirs + t_step)

    same = s.views(images[:tv_n], gen)[0]  # pixel statistics on the same images as torchvision's
    rep.row("sslbench TwoViews (batched)", images_per_s=ours_ips, ms_per_batch=1000 * t_ours,
            share_of_step=f"{100 * share_ours:.1f}%", pixel_mean=float(same.mean()), pixel_std=float(same.std()))
    rep.row("torchvision v2, per image", images_per_s=theirs_ips, ms_per_batch=1000 * t_theirs,
            share_of_step=f"{100 * share_theirs:.1f}%", pixel_mean=float(theirs_out[0].mean()),
            pixel_std=float(theirs_out[0].std()))
    rep.row(f"{args.method} training step (views ready)", ms_per_step=1000 * t_step, images_per_s=batch / t_step)
    r = ours_ips / theirs_ips
    rep.ratio("sslbench / torchvision v2", r, "(images/s)")
    rep.target("at least 10x torchvision v2 per image", r >= 10.0, f"{r:.1f}x")
    rep.target("views at most 10% of a quick training step", share_ours <= 0.10, f"{100 * share_ours:.1f}%")
    return rep.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
