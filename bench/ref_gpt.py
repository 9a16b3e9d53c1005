"""Reference PyTorch GPT for the workloads in docs/spec `workloads.md` (gpt-mini family).

state_dict names match the spec exactly:
  tok_emb.weight, pos_emb.weight,
  blocks.i.ln1.{weight,bias}, blocks.i.attn.qkv.{weight,bias}, blocks.i.attn.proj.{weight,bias},
  blocks.i.ln2.{weight,bias}, blocks.i.mlp.fc.{weight,bias}, blocks.i.mlp.proj.{weight,bias},
  ln_f.{weight,bias}
The LM head is tied to the token embedding: logits = x @ tok_emb.weight.T (no lm_head tensor).
Used only by scripts (fixtures and the benchmark peer), never by the Swift package.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

CONFIGS = {
    "gpt-mini": dict(vocab=256, T=256, layers=6, heads=8, d_model=256, mlp_hidden=1024, batch=8),
    "gpt-mini-long": dict(vocab=256, T=1024, layers=6, heads=8, d_model=256, mlp_hidden=1024, batch=2),
    "gpt-small": dict(vocab=256, T=512, layers=12, heads=8, d_model=512, mlp_hidden=2048, batch=4),
}

LR, BETAS, EPS, WEIGHT_DECAY = 3e-4, (0.9, 0.95), 1e-8, 0.1


class Attention(nn.Module):
    # True: F.scaled_dot_product_attention (PyTorch's fused CPU flash kernel) instead of the
    # explicit scores, mask, softmax and att @ v (bench/torch_train.py --attention sdpa).
    use_sdpa = False

    def __init__(self, d_model, heads, dropout=0.0):
        super().__init__()
        assert d_model % heads == 0
        self.heads, self.hs, self.dropout = heads, d_model // heads, dropout
        # rows of qkv.weight: q (d_model), k (d_model), v (d_model); head h uses rows h*hs..<(h+1)*hs of each
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=-1)
        q = q.view(B, T, self.heads, self.hs).transpose(1, 2)  # [B, H, T, hs]
        k = k.view(B, T, self.heads, self.hs).transpose(1, 2)
        v = v.view(B, T, self.heads, self.hs).transpose(1, 2)
        if self.use_sdpa:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
            return F.dropout(self.proj(y.transpose(1, 2).reshape(B, T, D)), self.dropout, self.training)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.hs)  # [B, H, T, T]
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        scores = scores.masked_fill(mask, float("-inf"))
        att = scores.softmax(dim=-1)
        att = F.dropout(att, self.dropout, self.training)
        y = (att @ v).transpose(1, 2).reshape(B, T, D)  # merge heads
        return F.dropout(self.proj(y), self.dropout, self.training)


class MLP(nn.Module):
    def __init__(self, d_model, hidden, dropout=0.0):
        super().__init__()
        self.fc = nn.Linear(d_model, hidden)
        self.proj = nn.Linear(hidden, d_model)
        self.dropout = dropout

    def forward(self, x):
        return F.dropout(self.proj(F.gelu(self.fc(x), approximate="tanh")), self.dropout, self.training)


class Block(nn.Module):
    def __init__(self, d_model, heads, hidden, dropout=0.0):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model, eps=1e-5)
        self.attn = Attention(d_model, heads, dropout)
        self.ln2 = nn.LayerNorm(d_model, eps=1e-5)
        self.mlp = MLP(d_model, hidden, dropout)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class RefGPT(nn.Module):
    def __init__(self, vocab, T, layers, heads, d_model, mlp_hidden, dropout=0.0, checkpoint=False):
        super().__init__()
        self.T = T
        self.tok_emb = nn.Embedding(vocab, d_model)
        self.pos_emb = nn.Embedding(T, d_model)
        self.blocks = nn.ModuleList(Block(d_model, heads, mlp_hidden, dropout) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d_model, eps=1e-5)
        self.dropout = dropout
        self.checkpoint = checkpoint  # wrap every block in torch.utils.checkpoint
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        """Spec init: normal(0, 0.02) weights (Linear and Embedding), zero biases, ones/zeros for norms.
        Draw order = named_parameters() order, so a fixed torch.manual_seed gives fixed weights."""
        norm_params = {id(p) for m in self.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()}
        for name, p in self.named_parameters():
            if id(p) in norm_params:
                p.fill_(1.0) if name.endswith("weight") else p.zero_()
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.normal_(0.0, 0.02)

    def forward(self, idx, target=None):
        B, T = idx.shape
        assert T <= self.T
        pos = torch.arange(T, device=idx.device)
        x = self.tok_emb(idx) + self.pos_emb(pos)
        x = F.dropout(x, self.dropout, self.training)
        for block in self.blocks:
            if self.checkpoint and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        x = self.ln_f(x)
        logits = x @ self.tok_emb.weight.T  # tied head
        if target is None:
            return logits
        loss = F.cross_entropy(logits.reshape(B * T, -1), target.reshape(B * T))  # mean over B*T
        return logits, loss


def param_groups(model, weight_decay=WEIGHT_DECAY):
    """Weight decay 0.1 on every 2-D parameter ("matrices"): all Linear weights AND tok_emb/pos_emb.
    No decay on biases and LayerNorm weights/biases (1-D)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def make_optimizer(model):
    return torch.optim.AdamW(param_groups(model), lr=LR, betas=BETAS, eps=EPS)
