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
        # (x - shift) * inv as x * inv + bias, in one kernel: fp32 arithmetic, written straight
        # in the model's dtype (uint8 in, bf16 out: 3 bytes a pixel instead of ~27 in 4 passes)
        out = torch.empty(x.shape, dtype=self.dtype, device=self.device)
        torch.addcmul((-shift * self.inv)[:, None, None, :], x, self.inv, out=out)
        out = out.permute(0, 3, 1, 2)  # NHWC memory viewed as NCHW is channels_last already
        return out if self.cl else out.contiguous()


def ten_crop(x: Tensor, crop: int) -> Tensor:
    """(N, C, S, S) -> (N*10, C, crop, crop): 4 corners + centre, and their flips (per image)."""
    s = x.shape[-1]
    c, e = (s - crop) // 2, s - crop
    crops = [
        x[..., a : a + crop, b : b + crop] for a, b in ((0, 0), (0, e), (e, 0), (e, e), (c, c))
    ]
    crops += [t.flip(-1) for t in crops]
    return torch.stack(crops, 1).flatten(0, 1)


def crop_batch(imgs: list[Tensor], params: Tensor, resize: int, crop: int) -> Tensor:
    """Decoded uint8 CHW images (on any device) -> one uint8 NHWC batch with decode_into's
    geometry: shorter side to `resize`, centre square, then the crop at each row of `params`
    (oy, ox, flip), or the whole square when oy < 0. Only images whose shorter side is not
    `resize` are resampled (batched per shape); every crop is a view, so the batch costs one
    stack and, if any image is mirrored, one gather."""
    p = params.tolist()
    full = p[0][0] < 0
    side = resize if full else crop
    resized: dict[int, Tensor] = {}
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, img in enumerate(imgs):
        if min(img.shape[-2:]) != resize:
            by_shape.setdefault(tuple(img.shape), []).append(i)
    for (_, h, w), idx in by_shape.items():
        s = resize / min(h, w)
        size = (max(resize, round(h * s)), max(resize, round(w * s)))
        batch = torch.nn.functional.interpolate(
            torch.stack([imgs[i] for i in idx]).float(),
            size=size,
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
        resized.update(zip(idx, batch.round_().clamp_(0, 255).to(torch.uint8), strict=True))
    views = []
    for i, img in enumerate(imgs):
        img = resized.get(i, img)
        h, w = img.shape[-2:]
        top, left = (h - resize) // 2, (w - resize) // 2
        if not full:
            top, left = top + p[i][0], left + p[i][1]
        views.append(img[:, top : top + side, left : left + side])
    x = torch.stack(views).permute(0, 2, 3, 1)  # N, side, side, 3 (a view)
    if full or not any(f for _, _, f in p):
        return x.contiguous()
    ar = torch.arange(side, device=x.device)
    flip = params.to(x.device, non_blocking=True)[:, 2:3] > 0  # pinned by the loader: no sync
    cols = torch.where(flip, side - 1 - ar, ar)  # N, side: source column of each output column
    return x.gather(2, cols[:, None, :, None].expand(x.shape))


class GpuJpegDecoder:
    """Batched nvJPEG decode via torchvision.io.decode_jpeg(device='cuda'); crops and flips on
    the GPU (crop_batch). Images that fail there are decoded by Pillow, so nothing is lost."""

    def __init__(self, device: torch.device, resize: int = 256, crop: int = 224):
        from torchvision.io import ImageReadMode, decode_jpeg

        self.decode, self.mode = decode_jpeg, ImageReadMode.RGB
        self.device, self.resize, self.crop = device, resize, crop

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
        return crop_batch(imgs, params, self.resize, self.crop)
