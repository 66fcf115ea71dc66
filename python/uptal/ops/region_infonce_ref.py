"""Plain-torch specification of `uptal::region_infonce`; the Triton kernels must agree with it.

For B regions, clip features clip_q, clip_k [B, J, D], inclusive clip ranges regions [B, 2] = [s, e] and a
queue of K keys [K, D]:

    q = normalize(mean(clip_q[b, s_q..e_q]))       # [B, D]  the query region; gradient flows into clip_q
    k = normalize(mean(clip_k[b, s_k..e_k]))       # [B, D]  the key region; detached (momentum encoder)
    logits = [q.k, q @ queue^T] / tau               # [B, 1 + K], the positive at index 0
    loss = mean over b of cross_entropy(logits_b, 0)

Stats: mean positive similarity q.k, mean negative similarity q.queue_k, and accuracy (the fraction of regions
whose positive similarity beats every negative). Computed in float32 for float32/bfloat16/float16 inputs and in
float64 for float64 inputs; the queue is cast to the same precision.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

NORMALIZE_EPS = 1e-12  # F.normalize's default: x / max(|x|, eps)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def region_weights(regions: torch.Tensor, num_clips: int, dtype: torch.dtype) -> torch.Tensor:
    """[B, J] weights of the region mean: 1 / (e - s + 1) for clips s..e, 0 elsewhere."""
    clip_index = torch.arange(num_clips, device=regions.device)
    inside = (clip_index >= regions[:, :1]) & (clip_index <= regions[:, 1:])  # [B, J]
    return inside.to(dtype) / inside.sum(dim=1, keepdim=True).to(dtype)


def region_mean(clip: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """[B, J, D] clip features, [B, 2] regions -> [B, D] mean over each region's clips."""
    weights = region_weights(regions, clip.shape[1], clip.dtype)  # [B, J]
    return torch.einsum("bj,bjd->bd", weights, clip)


def region_infonce_ref(clip_q: torch.Tensor, clip_k: torch.Tensor, regions_q: torch.Tensor,
                       regions_k: torch.Tensor, queue: torch.Tensor, tau: float
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> loss [], stats [3] (positive similarity, negative similarity, accuracy; detached), keys k [B, D]
    (detached). Differentiable with respect to clip_q by plain autograd."""
    loss, stats, keys, _, _, _ = region_infonce_forward_ref(clip_q, clip_k, regions_q, regions_k, queue, tau)
    return loss, stats, keys


def region_infonce_forward_ref(clip_q, clip_k, regions_q, regions_k, queue, tau):
    """`region_infonce_ref` plus the residuals its backward needs: queries q [B, D], the norms of the query
    region means before normalising [B], and the loss of each row [B] (lse - positive logit), all detached.

    The row loss rather than the lse: p_k = exp((sim_k - q.k) / tau - row loss) keeps the exponents that matter
    small, so they round finely in fp32 (the Triton kernels keep the same residual)."""
    dtype = compute_dtype(clip_q.dtype)
    query_means = region_mean(clip_q.to(dtype), regions_q)                         # [B, D]
    queries = F.normalize(query_means, dim=1, eps=NORMALIZE_EPS)                   # [B, D]
    with torch.no_grad():
        keys = F.normalize(region_mean(clip_k.to(dtype), regions_k), dim=1, eps=NORMALIZE_EPS)  # [B, D]
    positive = (queries * keys).sum(dim=1)                                         # [B]
    negative = queries @ queue.to(dtype).T                                         # [B, K]
    logits = torch.cat([positive[:, None], negative], dim=1) / tau                 # [B, 1 + K]
    row_losses = logits.logsumexp(dim=1) - logits[:, 0]                           # [B]
    loss = row_losses.mean()
    correct = (positive[:, None] > negative).all(dim=1).to(dtype)                  # [B]
    stats = torch.stack([positive.mean(), negative.mean(), correct.mean()]).detach()
    return (loss, stats, keys, queries.detach(), query_means.detach().norm(dim=1), row_losses.detach())


def region_infonce_backward_ref(grad_loss, regions_q, queries, query_norms, keys, queue, row_losses, tau: float,
                                num_clips: int, clip_dtype: torch.dtype) -> torch.Tensor:
    """d loss / d clip_q [B, J, D] from the forward residuals, in closed form (what the Triton backward computes).

    With p = softmax(logits): d loss / d q_b = (sum_k p_bk queue_k + (p_b,pos - 1) k_b) / (tau B); then through
    the normalisation and the region mean.
    """
    batch = queries.shape[0]
    queue = queue.to(queries.dtype)
    positive = (queries * keys).sum(dim=1)                                                    # [B]
    negative_probability = ((queries @ queue.T - positive[:, None]) / tau - row_losses[:, None]).exp()  # [B, K]
    positive_probability = (-row_losses).exp()                                               # [B]
    grad_q = (negative_probability @ queue + (positive_probability - 1)[:, None] * keys) \
        * (grad_loss / (tau * batch))                                                          # [B, D]
    # q = u / max(|u|, eps): the radial component drops out only where the norm is not clamped
    radial = torch.where(query_norms > NORMALIZE_EPS, (queries * grad_q).sum(dim=1), 0.0)     # [B]
    grad_mean = (grad_q - queries * radial[:, None]) / query_norms.clamp_min(NORMALIZE_EPS)[:, None]  # [B, D]
    weights = region_weights(regions_q, num_clips, queries.dtype)                             # [B, J]
    return (weights[:, :, None] * grad_mean[:, None, :]).to(clip_dtype)                       # [B, J, D]
