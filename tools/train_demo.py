"""Trains the demo model: a small Vision Mamba (the official architecture) on scikit-learn's handwritten digits.

Development tool only (needs torch, numpy, pillow, scikit-learn from PyPI); the product never runs it.
It refuses to train unless its own Vim implementation reproduces the official reference logits in
../shared/fixtures (so the demo checkpoint means what an official one means), then:

  1. writes the digits (8x8 scans, 16 grey levels) upsampled to 32x32 RGB PNGs into demo/data/{calib,val}/<digit>/
     (ImageNet layout; calib = 256 images drawn from the training split, val = the held-out split);
  2. trains with the official evaluation transform's normalisation (no resize below 33 px);
  3. saves demo/vim_digits.pth as torch.save({'model', 'epoch', 'args'}) like the official training script,
     and prints the validation accuracy it measures itself.

Run from the repository root:  python3 tools/train_demo.py [--fixtures ../shared/fixtures]
"""
import argparse
import math
import os
import random
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.datasets import load_digits
from torch import nn

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class RMSNorm(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.weight


class BidirectionalMixer(nn.Module):
    """The bimamba-v2 mixer: one in_proj, a forward and a backward selective scan, averaged, one out_proj."""

    def __init__(self, width, state=16, conv=4):
        super().__init__()
        inner = 2 * width
        rank = math.ceil(width / 16)
        self.inner, self.rank, self.state = inner, rank, state
        a_log = torch.log(torch.arange(1, state + 1, dtype=torch.float32)).repeat(inner, 1)
        self.A_log = nn.Parameter(a_log.clone())
        self.D = nn.Parameter(torch.ones(inner))
        self.A_b_log = nn.Parameter(a_log.clone())
        self.D_b = nn.Parameter(torch.ones(inner))
        self.in_proj = nn.Linear(width, 2 * inner, bias=False)
        self.conv1d = nn.Conv1d(inner, inner, conv, groups=inner, padding=conv - 1)
        self.x_proj = nn.Linear(inner, rank + 2 * state, bias=False)
        self.dt_proj = nn.Linear(rank, inner)
        self.conv1d_b = nn.Conv1d(inner, inner, conv, groups=inner, padding=conv - 1)
        self.x_proj_b = nn.Linear(inner, rank + 2 * state, bias=False)
        self.dt_proj_b = nn.Linear(rank, inner)
        self.out_proj = nn.Linear(inner, width, bias=False)
        for projection in (self.dt_proj, self.dt_proj_b):
            step = torch.exp(torch.rand(inner) * (math.log(0.1) - math.log(0.001)) + math.log(0.001)).clamp(min=1e-4)
            with torch.no_grad():
                projection.bias.copy_(step + torch.log(-torch.expm1(-step)))

    def direction(self, x, z, conv, x_proj, dt_proj, a_log, skip):
        length = x.shape[1]
        u = F.silu(conv(x.transpose(1, 2))[..., :length]).transpose(1, 2)  # causal: keep the first L outputs
        projected = x_proj(u)
        low, b, c = projected.split([self.rank, self.state, self.state], dim=-1)
        delta = F.softplus(dt_proj(low))
        a = -torch.exp(a_log)
        decay = torch.exp(delta.unsqueeze(-1) * a)  # B, L, E, N
        drive = (delta.unsqueeze(-1) * b.unsqueeze(2)) * u.unsqueeze(-1)
        h = torch.zeros_like(decay[:, 0])
        outputs = []
        # unbind once: indexing [:, t] in the loop would make autograd fill a full-size gradient per step.
        for decay_t, drive_t, c_t in zip(decay.unbind(1), drive.unbind(1), c.unbind(1)):
            h = decay_t * h + drive_t
            outputs.append((h * c_t.unsqueeze(1)).sum(-1))
        y = torch.stack(outputs, dim=1) + skip * u
        return y * F.silu(z)

    def forward(self, u):
        x, z = self.in_proj(u).chunk(2, dim=-1)
        forward = self.direction(x, z, self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D)
        backward = self.direction(
            x.flip(1), z.flip(1), self.conv1d_b, self.x_proj_b, self.dt_proj_b, self.A_b_log, self.D_b)
        return self.out_proj((forward + backward.flip(1)) / 2)


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.mixer = BidirectionalMixer(width)
        self.norm = RMSNorm(width)


class VisionMamba(nn.Module):
    """Vim with a middle class token, absolute position embedding and an fp32 residual stream."""

    def __init__(self, image=32, patch=4, width=64, depth=6, classes=10):
        super().__init__()
        grid = image // patch
        self.patches = grid * grid
        self.cls_token = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, self.patches + 1, width) * 0.02)
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, width, patch, stride=patch)
        self.head = nn.Linear(width, classes)
        self.layers = nn.ModuleList([Block(width) for _ in range(depth)])
        self.norm_f = RMSNorm(width)

    def forward(self, images):
        tokens = self.patch_embed.proj(images).flatten(2).transpose(1, 2)
        middle = self.patches // 2
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        hidden = torch.cat([tokens[:, :middle], cls, tokens[:, middle:]], dim=1) + self.pos_embed
        residual = None
        for block in self.layers:
            residual = hidden if residual is None else residual + hidden
            hidden = block.mixer(block.norm(residual))
        return self.head(self.norm_f(residual + hidden)[:, middle])


def check_against_official(fixtures):
    """Loads every official micro reference model into this implementation and compares logits."""
    checked = 0
    for folder in ("vim-official", "vim-official-init"):
        path = os.path.join(fixtures, folder, "vim_micro.pth")
        if not os.path.exists(path):
            continue
        state = torch.load(path, map_location="cpu", weights_only=False)["model"]
        model = VisionMamba(image=32, patch=4, width=48, depth=4, classes=10)
        model.load_state_dict(state, strict=True)
        model.eval()
        inputs = torch.from_numpy(np.load(os.path.join(fixtures, folder, "vim_micro_input.npy")))
        reference = np.load(os.path.join(fixtures, folder, "vim_micro_logits.npy"))
        with torch.no_grad():
            difference = np.abs(model(inputs).numpy() - reference).max()
        print(f"{folder}: max |logit difference| vs the official code {difference:.2e}")
        if difference > 1e-4:
            sys.exit(f"refusing to train: this implementation does not reproduce {path}")
        checked += 1
    if checked == 0:
        sys.exit(f"refusing to train: no official reference models under {fixtures}")


def write_images(images, labels, root):
    for index, (image, label) in enumerate(zip(images, labels)):
        folder = os.path.join(root, str(label))
        os.makedirs(folder, exist_ok=True)
        grey = Image.fromarray((image * (255 / 16)).round().astype(np.uint8), "L").resize((32, 32), Image.BICUBIC)
        grey.convert("RGB").save(os.path.join(folder, f"digit{index:04d}.png"))


def load_folder(root):
    """The images as the official evaluation transform gives them (no resize at 32 px), sorted like ImageFolder."""
    tensors, labels = [], []
    for label, folder in enumerate(sorted(os.listdir(root))):
        for name in sorted(os.listdir(os.path.join(root, folder))):
            pixels = np.asarray(Image.open(os.path.join(root, folder, name)).convert("RGB"), dtype=np.float32) / 255
            tensors.append(torch.from_numpy(pixels).permute(2, 0, 1))
            labels.append(label)
    return (torch.stack(tensors) - MEAN) / STD, torch.tensor(labels)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixtures", default="../shared/fixtures")
    parser.add_argument("--output", default="demo")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    check_against_official(args.fixtures)

    digits = load_digits()
    order = np.random.default_rng(args.seed).permutation(len(digits.target))
    validation, training = order[:500], order[500:]
    calibration = np.sort(np.random.default_rng(args.seed + 1).choice(training, 256, replace=False))
    data = os.path.join(args.output, "data")
    write_images(digits.images[calibration], digits.target[calibration], os.path.join(data, "calib"))
    write_images(digits.images[validation], digits.target[validation], os.path.join(data, "val"))
    train_root = os.path.join(args.output, ".train-images")
    write_images(digits.images[training], digits.target[training], train_root)
    train_x, train_y = load_folder(train_root)
    val_x, val_y = load_folder(os.path.join(data, "val"))

    model = VisionMamba()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    steps = args.epochs * math.ceil(len(train_y) / 64)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps)
    for epoch in range(args.epochs):
        model.train()
        permutation = torch.randperm(len(train_y))
        for start in range(0, len(train_y), 64):
            batch = permutation[start:start + 64]
            images = train_x[batch]
            # Small random shifts (up to 2 px): the scans are not perfectly centred.
            dx, dy = random.randint(-2, 2), random.randint(-2, 2)
            images = torch.roll(images, shifts=(dy, dx), dims=(2, 3))
            loss = F.cross_entropy(model(images), train_y[batch], label_smoothing=0.1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(val_x).argmax(1) == val_y).float().mean().item() * 100
        print(f"epoch {epoch + 1}/{args.epochs}: loss {loss.item():.3f}, validation top-1 {accuracy:.2f}%", flush=True)

    namespace = argparse.Namespace(model="vim_digits", input_size=32, nb_classes=10, epochs=args.epochs, seed=args.seed)
    path = os.path.join(args.output, "vim_digits.pth")
    torch.save({"model": model.state_dict(), "epoch": args.epochs - 1, "args": namespace}, path)
    with torch.no_grad():
        logits = model(val_x)
    top1 = (logits.argmax(1) == val_y).float().mean().item() * 100
    top5 = (logits.topk(5, 1).indices == val_y[:, None]).any(1).float().mean().item() * 100
    print(f"saved {path}: validation top-1 {top1:.2f}%, top-5 {top5:.2f}% on {len(val_y)} images "
          f"(PyTorch, this script's own evaluation)")
    for name in os.listdir(train_root):
        for file in os.listdir(os.path.join(train_root, name)):
            os.remove(os.path.join(train_root, name, file))
        os.rmdir(os.path.join(train_root, name))
    os.rmdir(train_root)


if __name__ == "__main__":
    main()
