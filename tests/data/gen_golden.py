#!/usr/bin/python3
"""gen_golden.py — writes tests/data/golden_small.h5, the PyTorch golden values
for tests/core/test_golden.c.

A small FLIP model (DESIGN §2, parameter names and layouts of core/model.h) is
built functionally in float64 from float32-rounded random weights; the loss,
the normalised embeddings and the gradient of every parameter are stored for
two cases on the same batch:
  mask50  FLIP masking, N = Np/2 kept patches per image (explicit kept indices)
  mask0   unmasked (N = Np, kept indices 0..Np-1)

The transformer block is cross-checked against torch.nn.TransformerEncoderLayer
(norm_first, exact GELU, key_padding_mask) loaded with the same weights, so the
block follows PyTorch's own pre-LN transformer, not only this file's reading of
the design.

Run with Debian's python (torch 1.13, h5py):  /usr/bin/python3 gen_golden.py
Output is deterministic (fixed seeds). See tests/data/README.md.
"""
import argparse
import math
import os

import h5py
import numpy as np
import torch
import torch.nn.functional as F

F64 = torch.float64

# The small config: every FlipConfig field. Vision and text towers have
# different widths and head counts, and D differs from both, so a swapped
# dimension cannot go unnoticed.
CFG = dict(
    image_size=8, channels=3, patch=2,
    width=8, depth=2, heads=2,
    text_width=12, text_depth=2, text_heads=3,
    vocab=40, context=8, embed_dim=6, mlp_ratio=4,
    mean=[0.48145466, 0.4578275, 0.40821073],
    std=[0.26862954, 0.26130258, 0.27577711],
)
BATCH = 4
LENS = [8, 5, 2, 6]       # valid tokens per caption: one full, the rest padded
VALID_VOCAB = 30          # ids at valid positions are < 30, at padded positions >= 30:
                          # token_embed rows 30.. must get exactly zero gradient
LOGIT_T = 2.0             # t, inside [0, ln 100] and != the init ln(1/0.07)
LN_EPS = 1e-6


def param_shapes(c):
    """(name, shape) in the arena order of core/model.h."""
    S, Ci, p = c["image_size"], c["channels"], c["patch"]
    P = p * p * Ci
    out = []

    def tower(prefix, C, L, r):
        for i in range(L):
            b = "%s.blocks.%d." % (prefix, i)
            out.extend([
                (b + "ln1.weight", (C,)), (b + "ln1.bias", (C,)),
                (b + "attn.qkv.weight", (3 * C, C)), (b + "attn.qkv.bias", (3 * C,)),
                (b + "attn.proj.weight", (C, C)), (b + "attn.proj.bias", (C,)),
                (b + "ln2.weight", (C,)), (b + "ln2.bias", (C,)),
                (b + "mlp.fc1.weight", (r * C, C)), (b + "mlp.fc1.bias", (r * C,)),
                (b + "mlp.fc2.weight", (C, r * C)), (b + "mlp.fc2.bias", (C,)),
            ])
        out.extend([(prefix + ".ln_final.weight", (C,)), (prefix + ".ln_final.bias", (C,)),
                    (prefix + ".proj.weight", (c["embed_dim"], C))])

    C, Ct, r = c["width"], c["text_width"], c["mlp_ratio"]
    out.extend([("visual.patch_embed.weight", (C, P)), ("visual.patch_embed.bias", (C,))])
    tower("visual", C, c["depth"], r)
    # text: token + position embedding first, then blocks, ln_final, proj
    out.extend([("text.token_embed.weight", (c["vocab"], Ct)), ("text.pos_embed", (c["context"], Ct))])
    tower("text", Ct, c["text_depth"], r)
    out.append(("logit_scale", (1,)))
    return out


def random_params(c, gen):
    """Float32 weights scaled so activations stay O(1); LN weights/biases non-trivial."""
    params = {}
    for name, shape in param_shapes(c):
        if name == "logit_scale":
            v = torch.tensor([LOGIT_T])
        elif name.endswith("ln1.weight") or name.endswith("ln2.weight") or name.endswith("ln_final.weight"):
            v = 1.0 + 0.3 * torch.randn(shape, generator=gen, dtype=F64)
        elif name.endswith(".bias"):
            v = 0.2 * torch.randn(shape, generator=gen, dtype=F64)
        elif name == "text.token_embed.weight":
            v = torch.randn(shape, generator=gen, dtype=F64)
        elif name == "text.pos_embed":
            v = 0.5 * torch.randn(shape, generator=gen, dtype=F64)
        elif name.endswith("attn.qkv.weight"):
            # larger q/k so attention is far from uniform
            v = 1.5 * torch.randn(shape, generator=gen, dtype=F64) / math.sqrt(shape[1])
        else:  # linear weights (out, in)
            v = torch.randn(shape, generator=gen, dtype=F64) / math.sqrt(shape[1])
        # the C model holds float32: the golden values are computed from these roundings
        params[name] = v.to(torch.float32).to(F64)
    return params


def posemb_sincos_2d(gh, gw, C):
    """core/ops.h: omega_k = 1 / 10000^(k / (C/4)), k < C/4; row n = py*gw + px:
    [sin(px w), cos(px w), sin(py w), cos(py w)], each C/4 wide."""
    assert C % 4 == 0
    q = C // 4
    omega = 1.0 / (10000.0 ** (torch.arange(q, dtype=F64) / q))
    py, px = torch.meshgrid(torch.arange(gh, dtype=F64), torch.arange(gw, dtype=F64), indexing="ij")
    px = px.reshape(-1, 1) * omega[None]
    py = py.reshape(-1, 1) * omega[None]
    return torch.cat([torch.sin(px), torch.cos(px), torch.sin(py), torch.cos(py)], dim=1)


def layernorm(x, w, b):
    return F.layer_norm(x, (x.shape[-1],), w, b, eps=LN_EPS)


def block(x, P, prefix, H, lens):
    """Pre-LN block. x (B, T, C); lens (B) valid keys per sample or None (all)."""
    B, T, C = x.shape
    hd = C // H
    h = layernorm(x, P[prefix + "ln1.weight"], P[prefix + "ln1.bias"])
    qkv = F.linear(h, P[prefix + "attn.qkv.weight"], P[prefix + "attn.qkv.bias"])  # (B, T, 3C)
    q, k, v = qkv[..., :C], qkv[..., C:2 * C], qkv[..., 2 * C:]
    # head j owns columns [j*hd, (j+1)*hd) of q, k and v
    q, k, v = (t.reshape(B, T, H, hd).transpose(1, 2) for t in (q, k, v))  # (B, H, T, hd)
    s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)  # (B, H, T, T)
    if lens is not None:
        pad = torch.arange(T)[None, :] >= torch.as_tensor(lens)[:, None]  # (B, T) keys never attended
        s = s.masked_fill(pad[:, None, None, :], float("-inf"))
    a = torch.softmax(s, dim=-1) @ v  # (B, H, T, hd)
    a = a.transpose(1, 2).reshape(B, T, C)
    x = x + F.linear(a, P[prefix + "attn.proj.weight"], P[prefix + "attn.proj.bias"])
    h = layernorm(x, P[prefix + "ln2.weight"], P[prefix + "ln2.bias"])
    h = F.gelu(F.linear(h, P[prefix + "mlp.fc1.weight"], P[prefix + "mlp.fc1.bias"]))  # exact erf GELU
    return x + F.linear(h, P[prefix + "mlp.fc2.weight"], P[prefix + "mlp.fc2.bias"])


def patchify(images, c, dtype):
    """uint8 (B, S, S, Ci) -> normalised (B, Np, p*p*Ci); patch n = py*gw + px, inside (dy, dx, c)."""
    B, S, _, Ci = images.shape
    p = c["patch"]
    g = S // p
    mean = torch.tensor(np.float32(c["mean"]), dtype=F64)  # float32-rounded, as the C config holds
    std = torch.tensor(np.float32(c["std"]), dtype=F64)
    x = (torch.as_tensor(images, dtype=F64) / 255.0 - mean) / std
    x = x.to(dtype)
    return x.reshape(B, g, p, g, p, Ci).permute(0, 1, 3, 2, 4, 5).reshape(B, g * g, p * p * Ci)


def encode_image(P, images, keep, c):
    """keep (B, N) ascending kept patch indices; patch embedding on kept rows only."""
    g = c["image_size"] // c["patch"]
    patches = patchify(images, c, P["visual.patch_embed.weight"].dtype)  # (B, Np, P)
    keep_t = torch.as_tensor(keep, dtype=torch.long)
    kept = torch.gather(patches, 1, keep_t[:, :, None].expand(-1, -1, patches.shape[2]))  # (B, N, P)
    x = F.linear(kept, P["visual.patch_embed.weight"], P["visual.patch_embed.bias"])
    x = x + posemb_sincos_2d(g, g, c["width"]).to(x.dtype)[keep_t]  # fixed, no CLS, no LN after
    for i in range(c["depth"]):
        x = block(x, P, "visual.blocks.%d." % i, c["heads"], None)
    x = layernorm(x, P["visual.ln_final.weight"], P["visual.ln_final.bias"])
    return F.linear(x.mean(dim=1), P["visual.proj.weight"])  # (B, D)


def encode_text(P, tokens, lens, c):
    T = c["context"]
    tok = torch.as_tensor(tokens, dtype=torch.long)
    x = P["text.token_embed.weight"][tok] + P["text.pos_embed"][None, :T]
    for i in range(c["text_depth"]):
        x = block(x, P, "text.blocks.%d." % i, c["text_heads"], lens)
    x = layernorm(x, P["text.ln_final.weight"], P["text.ln_final.bias"])
    valid = (torch.arange(T)[None, :] < torch.as_tensor(lens)[:, None]).to(x.dtype)  # (B, T)
    pooled = (x * valid[:, :, None]).sum(dim=1) / valid.sum(dim=1, keepdim=True)
    return F.linear(pooled, P["text.proj.weight"])


def flip_loss(P, images, keep, tokens, lens, c):
    u = F.normalize(encode_image(P, images, keep, c), dim=1, eps=0.0)
    v = F.normalize(encode_text(P, tokens, lens, c), dim=1, eps=0.0)
    logits = torch.exp(P["logit_scale"][0]) * (u @ v.t())  # (B, B)
    labels = torch.arange(u.shape[0])
    loss = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))
    return loss, u, v


def check_block_against_torch(P, c, prefix, C, H, lens, gen):
    """The functional block equals nn.TransformerEncoderLayer (pre-LN, exact GELU)."""
    layer = torch.nn.TransformerEncoderLayer(C, H, dim_feedforward=c["mlp_ratio"] * C, dropout=0.0,
                                             activation="gelu", layer_norm_eps=LN_EPS,
                                             batch_first=True, norm_first=True, dtype=F64)
    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(P[prefix + "attn.qkv.weight"])
        layer.self_attn.in_proj_bias.copy_(P[prefix + "attn.qkv.bias"])
        layer.self_attn.out_proj.weight.copy_(P[prefix + "attn.proj.weight"])
        layer.self_attn.out_proj.bias.copy_(P[prefix + "attn.proj.bias"])
        layer.norm1.weight.copy_(P[prefix + "ln1.weight"])
        layer.norm1.bias.copy_(P[prefix + "ln1.bias"])
        layer.norm2.weight.copy_(P[prefix + "ln2.weight"])
        layer.norm2.bias.copy_(P[prefix + "ln2.bias"])
        layer.linear1.weight.copy_(P[prefix + "mlp.fc1.weight"])
        layer.linear1.bias.copy_(P[prefix + "mlp.fc1.bias"])
        layer.linear2.weight.copy_(P[prefix + "mlp.fc2.weight"])
        layer.linear2.bias.copy_(P[prefix + "mlp.fc2.bias"])
    layer.eval()
    T = c["context"]
    x = torch.randn(len(lens), T, C, generator=gen, dtype=F64)
    pad = torch.arange(T)[None, :] >= torch.as_tensor(lens)[:, None]
    with torch.no_grad():
        # the norm_first path of TransformerEncoderLayer.forward, written out: its inference fast
        # path (taken under no_grad) may zero padded query rows, which ours (like ops.h) keeps
        ref = x + layer._sa_block(layer.norm1(x), None, pad)
        ref = ref + layer._ff_block(layer.norm2(ref))
        got = block(x, P, prefix, H, lens)
    err = (got - ref).abs().max().item()
    assert err < 1e-12, "block %s differs from nn.TransformerEncoderLayer by %g" % (prefix, err)
    return err


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(here, "golden_small.h5"))
    args = ap.parse_args()

    c = CFG
    S, Ci, p = c["image_size"], c["channels"], c["patch"]
    Np = (S // p) ** 2
    T, B = c["context"], BATCH
    gen = torch.Generator().manual_seed(20240601)
    rng = np.random.default_rng(20240601)

    P = random_params(c, gen)
    tokens = rng.integers(0, VALID_VOCAB, size=(B, T)).astype(np.int32)
    # One valid text row whose LayerNorm input has variance ~1e-4: position 1's embedding
    # nearly cancels the token at (b=0, t=1), so LN eps (1e-6, not torch's default 1e-5)
    # moves that row by a few per cent and a wrong eps cannot pass.
    tid = int(tokens[0, 1])
    pos = P["text.pos_embed"].clone()
    pos[1] = -P["text.token_embed.weight"][tid] + 0.01 * torch.randn(c["text_width"], generator=gen, dtype=F64)
    P["text.pos_embed"] = pos.to(torch.float32).to(F64)
    images = rng.integers(0, 256, size=(B, S, S, Ci), dtype=np.uint8)
    lens = np.array(LENS, dtype=np.int32)
    assert lens.min() >= 2 and lens.max() == T and (lens < T).any()
    for b in range(B):  # padded positions carry ids that appear nowhere valid
        tokens[b, lens[b]:] = rng.integers(VALID_VOCAB, c["vocab"], size=T - lens[b])
    N = int(math.floor(Np * (1 - 0.5)))
    keep50 = np.sort(np.stack([rng.permutation(Np)[:N] for _ in range(B)]), axis=1).astype(np.int32)
    keep0 = np.tile(np.arange(Np, dtype=np.int32), (B, 1))
    cases = {"mask50": keep50, "mask0": keep0}

    err_v = check_block_against_torch(P, c, "visual.blocks.1.", c["width"], c["heads"], [T] * B, gen)
    err_t = check_block_against_torch(P, c, "text.blocks.0.", c["text_width"], c["text_heads"], LENS, gen)

    golden = {}
    for case, keep in cases.items():
        leaves = {k: v.clone().requires_grad_(True) for k, v in P.items()}
        loss, u, v = flip_loss(leaves, images, keep, tokens, lens, c)
        loss.backward()
        grads = {k: t.grad.detach().clone() for k, t in leaves.items()}
        golden[case] = (loss.item(), u.detach(), v.detach(), grads)
        # the same model in float32 (torch's kernels): how far plain float rounding moves each
        # value, the scale against which tests/tolerances.h sets the C model's bounds
        l32 = {k: t.to(torch.float32).requires_grad_(True) for k, t in P.items()}
        loss32, _, _ = flip_loss(l32, images, keep, tokens, lens, c)
        loss32.backward()
        worst = max(((l32[k].grad.to(F64) - g).abs().max().item() / g.abs().max().item(), k)
                    for k, g in grads.items())
        print("%s: N=%d loss=%.10f  float32 torch: loss err %.2g, worst grad err/max|grad| %.2g (%s)"
              % (case, keep.shape[1], loss.item(), abs(loss32.item() - loss.item()), worst[0], worst[1]))
        for name, g in grads.items():
            assert torch.isfinite(g).all(), name
            if name.endswith("attn.qkv.bias"):
                # the key bias shifts every logit of a query row equally: softmax ignores it,
                # its gradient is exactly zero in exact arithmetic (rounding noise in practice)
                C3 = g.shape[0] // 3
                g = torch.cat([g[:C3], g[2 * C3:]])
            if name != "text.token_embed.weight":
                assert (g != 0).all(), "%s has exact zeros in its gradient" % name
        tg = grads["text.token_embed.weight"]
        assert (tg[VALID_VOCAB:] == 0).all() and (tg[:VALID_VOCAB].abs().sum(1) > 0).any()

    print("block check vs nn.TransformerEncoderLayer: max err visual %.2g text %.2g" % (err_v, err_t))

    with h5py.File(args.out, "w", libver=("v108", "v108")) as f:
        for k in ("image_size", "channels", "patch", "width", "depth", "heads", "text_width",
                  "text_depth", "text_heads", "vocab", "context", "embed_dim", "mlp_ratio"):
            f.attrs[k] = np.int32(c[k])
        f.attrs["mean"] = np.array(c["mean"], dtype=np.float32)
        f.attrs["std"] = np.array(c["std"], dtype=np.float32)
        f.attrs["batch"] = np.int32(B)
        f.attrs["valid_vocab"] = np.int32(VALID_VOCAB)
        f.attrs["generator"] = "tests/data/gen_golden.py (torch %s, float64)" % torch.__version__
        def put(where, name, data):
            # contiguous, uncompressed: the values are random floats (gzip saves < 5 %) and
            # ~400 tiny datasets would each pay for a chunk index
            where.create_dataset(name, data=data)

        put(f, "inputs/images", images)
        f.create_dataset("inputs/tokens", data=tokens)
        f.create_dataset("inputs/lens", data=lens)
        for case, keep in cases.items():
            f.create_dataset("inputs/keep/" + case, data=keep)
        for name, _ in param_shapes(c):
            put(f, "params/" + name, P[name].numpy().astype(np.float32))
        for case, (loss, u, v, grads) in golden.items():
            g = f.create_group("golden/" + case)
            g.attrs["n_kept"] = np.int32(cases[case].shape[1])
            g.create_dataset("loss", data=np.float64(loss))
            g.create_dataset("img_emb", data=u.numpy())
            g.create_dataset("txt_emb", data=v.numpy())
            for name, _ in param_shapes(c):
                # float32 storage: 6e-8 relative rounding, far below the test tolerances
                put(g, "grads/" + name, grads[name].numpy().astype(np.float32))
    print("wrote %s (%d bytes, %d parameters)" % (args.out, os.path.getsize(args.out),
                                                  sum(int(np.prod(s)) for _, s in param_shapes(c))))


if __name__ == "__main__":
    main()
