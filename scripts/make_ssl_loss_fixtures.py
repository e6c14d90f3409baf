"""Reference values and gradients (float64) of the baselines' losses, restated from the formulas of
reference §7 (ssl-sota, from htdt/self-supervised), for tests/ssl_losses.rs:

- contrastive_loss(x0, x1, tau, norm=True): SimCLR's NT-Xent (2N-way, the other view as positive,
  the same view's other samples and the other view's as negatives, the self-similarity masked with
  -1e9), the two directions averaged;
- norm_mse_loss(x0, x1): 2 - 2 * cos(x0, x1) averaged over the batch (BYOL, W-MSE);
- Whitening2d(track_running_stats=False, eps)(x): centre, covariance with N-1, shrink by eps,
  Cholesky, multiply by L^-T.

For the whitening the gradient is of sum(W ⊙ whiten(x)) for a fixed random W.

    python3 scripts/make_ssl_loss_fixtures.py      (needs torch)
"""
import json
import os

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "ssl_losses.json")


def contrastive_loss(x0, x1, tau, norm):
    bsize = x0.shape[0]
    target = torch.arange(bsize)
    eye_mask = torch.eye(bsize, dtype=x0.dtype) * 1e9
    if norm:
        x0 = F.normalize(x0, p=2, dim=1)
        x1 = F.normalize(x1, p=2, dim=1)
    logits00 = x0 @ x0.t() / tau - eye_mask
    logits11 = x1 @ x1.t() / tau - eye_mask
    logits01 = x0 @ x1.t() / tau
    logits10 = x1 @ x0.t() / tau
    return (F.cross_entropy(torch.cat([logits01, logits00], dim=1), target)
            + F.cross_entropy(torch.cat([logits10, logits11], dim=1), target)) / 2


def norm_mse_loss(x0, x1):
    x0 = F.normalize(x0)
    x1 = F.normalize(x1)
    return 2 - 2 * (x0 * x1).sum(dim=-1).mean()


def whiten(x, eps):
    d = x.shape[1]
    xn = x - x.mean(0, keepdim=True)
    cov = xn.t() @ xn / (x.shape[0] - 1)
    eye = torch.eye(d, dtype=x.dtype)
    shrunk = (1 - eps) * cov + eps * eye
    inv = torch.linalg.solve_triangular(torch.linalg.cholesky(shrunk), eye, upper=False)
    return xn @ inv.t()


def flat(t):
    return t.detach().reshape(-1).tolist()


def main():
    g = torch.Generator().manual_seed(7)
    cases = {"nt_xent": [], "norm_mse": [], "whiten": []}
    for n, d in [(8, 5), (16, 12)]:
        a = torch.randn(n, d, generator=g, dtype=torch.float64)
        b = (a + 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64))
        for tau in [0.5, 0.1]:
            x0, x1 = a.clone().requires_grad_(), b.clone().requires_grad_()
            loss = contrastive_loss(x0, x1, tau, True)
            loss.backward()
            cases["nt_xent"].append({"n": n, "d": d, "tau": tau, "a": flat(a), "b": flat(b), "loss": loss.item(), "grad_a": flat(x0.grad), "grad_b": flat(x1.grad)})
        x0, x1 = a.clone().requires_grad_(), b.clone().requires_grad_()
        loss = norm_mse_loss(x0, x1)
        loss.backward()
        cases["norm_mse"].append({"n": n, "d": d, "a": flat(a), "b": flat(b), "loss": loss.item(), "grad_a": flat(x0.grad), "grad_b": flat(x1.grad)})
    for n, d in [(32, 6), (40, 10)]:
        x = torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.randn(d, d, generator=g, dtype=torch.float64)
        w = torch.randn(n, d, generator=g, dtype=torch.float64)
        for eps in [0.0, 0.01]:
            xi = x.clone().requires_grad_()
            y = whiten(xi, eps)
            (y * w).sum().backward()
            cases["whiten"].append({"n": n, "d": d, "eps": eps, "x": flat(x), "w": flat(w), "y": flat(y), "grad": flat(xi.grad)})
    with open(OUT, "w") as f:
        json.dump({"torch": torch.__version__, **cases}, f)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
