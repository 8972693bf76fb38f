"""Batches on the device: mean and PCA lighting, ten crops, and nvJPEG decoding with crops."""

from __future__ import annotations

import torch
from torch import Tensor

from train.data import EIGVAL, EIGVEC, MEAN_RGB, STD_RGB, decode_square


class DevicePrep:
    """uint8 NHWC batch -> float NCHW (channels_last): flips are done, adds PCA lighting and
    subtracts the mean. `normalize`: 'paper' (pixels 0..255 minus mean) or 'std' (ImageNet std)."""

    def __init__(
        self,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        normalize: str = "paper",
        channels_last: bool = False,
        lighting: bool = True,
    ):
        scale = 255.0 if normalize == "paper" else 1.0
        self.device, self.dtype, self.cl, self.lighting = device, dtype, channels_last, lighting
        self.eig = torch.tensor(EIGVEC, device=device) * torch.tensor(EIGVAL, device=device)
        self.mean = torch.tensor(MEAN_RGB, device=device) * 255.0
        std = torch.tensor(STD_RGB if normalize == "std" else (1 / scale,) * 3, device=device)
        self.inv = 1.0 / (std * 255.0)  # maps 0..255 pixel offsets to model units
        if normalize not in ("paper", "std"):
            raise ValueError("normalize must be 'paper' or 'std'")

    def __call__(self, images: Tensor, alpha: Tensor | None = None) -> Tensor:
        x = images.to(self.device, non_blocking=True)
        shift = self.mean.expand(x.shape[0], 3)
        if self.lighting and alpha is not None:
            # added rgb = eigvec @ (alpha * eigval), in 0..1 units, hence * 255
            shift = shift - 255.0 * (alpha.to(self.device, non_blocking=True) @ self.eig.T)
        x = (x.float() - shift[:, None, None, :]) * self.inv
        x = x.permute(0, 3, 1, 2)  # NHWC memory viewed as NCHW is channels_last already
        x = x.to(self.dtype)
        return x if self.cl else x.contiguous()


def ten_crop(x: Tensor, crop: int) -> Tensor:
    """(N, C, S, S) -> (N*10, C, crop, crop): 4 corners + centre, and their flips (per image)."""
    s = x.shape[-1]
    c, e = (s - crop) // 2, s - crop
    crops = [
        x[..., a : a + crop, b : b + crop] for a, b in ((0, 0), (0, e), (e, 0), (e, e), (c, c))
    ]
    crops += [t.flip(-1) for t in crops]
    return torch.stack(crops, 1).flatten(0, 1)


class GpuJpegDecoder:
    """Batched nvJPEG decode via torchvision.io.decode_jpeg(device='cuda'); crops and flips on
    the GPU. Images that fail there are decoded by Pillow, so nothing is lost."""

    def __init__(self, device: torch.device, resize: int = 256, crop: int = 224):
        from torchvision.io import ImageReadMode, decode_jpeg

        self.decode, self.mode = decode_jpeg, ImageReadMode.RGB
        self.device, self.resize, self.crop = device, resize, crop

    def _squares(self, imgs: list[Tensor]) -> Tensor:
        """Shorter side to `resize` and centre square, batched per distinct image shape."""
        r = self.resize
        out: list[Tensor | None] = [None] * len(imgs)
        shapes: dict[tuple[int, ...], list[int]] = {}
        for i, img in enumerate(imgs):
            shapes.setdefault(tuple(img.shape), []).append(i)
        for (_, h, w), idx in shapes.items():
            batch = torch.stack([imgs[i] for i in idx])
            if (h, w) != (r, r):
                s = r / min(h, w)
                size = (max(r, round(h * s)), max(r, round(w * s)))
                batch = torch.nn.functional.interpolate(
                    batch.float(), size=size, mode="bilinear", antialias=True, align_corners=False
                )
                batch = batch.round_().clamp_(0, 255).to(torch.uint8)
                t, left = (size[0] - r) // 2, (size[1] - r) // 2
                batch = batch[:, :, t : t + r, left : left + r]
            for j, i in enumerate(idx):
                out[i] = batch[j]
        return torch.stack(out)

    def __call__(self, data: Tensor, lengths: Tensor, params: Tensor) -> Tensor:
        """Returns uint8 NHWC crops (or full squares when params say -1), like the CPU path."""
        chunks = list(torch.split(data, lengths.tolist()))
        # torchvision's CUDA decoder allocates its outputs on the current stream but writes them
        # from a private stream that does not wait for ours (pytorch/vision PR 9606), so a block
        # that queued kernels still read can be overwritten: drain this stream first. With the
        # prefetch thread this is a side stream and the model step keeps running meanwhile.
        torch.cuda.current_stream(self.device).synchronize()
        try:
            imgs = self.decode(chunks, mode=self.mode, device=self.device)
        except RuntimeError:
            imgs = []
            for c in chunks:
                try:
                    imgs.append(self.decode(c, mode=self.mode, device=self.device))
                except RuntimeError:
                    arr = decode_square(bytes(c.numpy()), self.resize)
                    imgs.append(torch.from_numpy(arr).permute(2, 0, 1).to(self.device))
        x = self._squares(imgs)  # N, 3, S, S
        p = params.to(self.device)
        if int(params[0, 0]) < 0:
            return x.permute(0, 2, 3, 1)
        # one gather for every image's crop offset and flip
        ar = torch.arange(self.crop, device=self.device)
        rows = p[:, 0:1] + ar
        cols = p[:, 1:2] + torch.where(p[:, 2:3] > 0, self.crop - 1 - ar, ar)
        n = torch.arange(x.shape[0], device=self.device)[:, None, None]
        x = x.permute(0, 2, 3, 1)  # N, S, S, 3
        return x[n, rows[:, :, None], cols[:, None, :]]  # N, crop, crop, 3
