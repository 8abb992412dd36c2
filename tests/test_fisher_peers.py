"""`diagonal_fisher` against peer libraries, in float64: BackPACK's DiagGGNExact (the true Fisher of a softmax
cross-entropy is its GGN diagonal) and SumGradSquared on the embedded top; curvlinops' GGN and empirical Fisher on
models where a layer-by-layer shortcut would be wrong: a weight shared by two layers, a weight also used outside
its layer, Linear / Conv subclasses that change the forward."""

import copy
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from curvlinops import EFLinearOperator, GGNLinearOperator
from timm.layers import StdConv2d
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from holomerge_lab.analysis import bench
from holomerge_lab.experiment.training import task_objective
from holomerge_lab.method.fisher import diagonal_fisher, exact_routes, functional_diagonal_fisher
from holomerge_lab.models.heads import TaskLogits

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
from backpack_peer import backpack_fisher, plain_top  # noqa: E402


def assert_equal_fishers(ours: dict, reference: dict) -> None:
    assert ours.keys() == reference.keys()
    largest = max(float(v.abs().max()) for v in reference.values())
    for n in reference:
        torch.testing.assert_close(ours[n], reference[n], rtol=1e-10, atol=1e-12 * largest)


def curvlinops_fisher(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, kind: str
) -> dict[str, torch.Tensor]:
    """The diagonal of curvlinops' dense GGN (true) or empirical Fisher of the mean cross-entropy, by name."""
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    operator = GGNLinearOperator if kind == "true" else EFLinearOperator
    with sdpa_kernel(SDPBackend.MATH):  # its forward-mode products need attention's math kernel
        matrix = operator(model, nn.CrossEntropyLoss(), list(named.values()), [(x, y)])
        diagonal = (matrix @ torch.eye(matrix.shape[1], dtype=x.dtype)).diagonal()
    sizes = [p.numel() for p in named.values()]
    return {n: d.reshape(p.shape) for (n, p), d in zip(named.items(), diagonal.split(sizes), strict=True)}


class SharedWeight(nn.Module):
    """Two layers holding one weight."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 3)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.head(torch.tanh(self.b(torch.tanh(self.a(x)))))


class WeightUsedOutside(nn.Module):
    """fc2's weight is used by fc2 and by a direct F.linear call."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 5), nn.Linear(5, 3)

    def forward(self, x):
        h = torch.tanh(self.fc1(x))
        return self.fc2(h) + F.linear(h.flip(-1), self.fc2.weight)


class RowNormalisedLinear(nn.Linear):
    """A Linear whose rows are normalised in the forward (weight normalisation without the gain)."""

    def forward(self, x):
        return F.linear(x, self.weight / self.weight.norm(dim=1, keepdim=True), self.bias)


def row_normalised() -> nn.Module:
    return nn.Sequential(RowNormalisedLinear(4, 5), nn.Tanh(), nn.Linear(5, 3))


def standardised_conv() -> nn.Module:
    """timm's StdConv2d (weights standardised in the forward), 1×1 and 3×3."""
    return nn.Sequential(
        StdConv2d(3, 4, 1),
        nn.Tanh(),
        StdConv2d(4, 4, 3, padding=1),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(16, 3),
    )


class EveryClosedForm(nn.Module):
    """A strided padded convolution, a layer norm and a linear layer over positions: all op by op."""

    def __init__(self):
        super().__init__()
        self.conv, self.norm = nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.LayerNorm(4)
        self.fc, self.head = nn.Linear(4, 5), nn.Linear(5, 3)

    def forward(self, x):
        tokens = self.norm(self.conv(x).flatten(2).transpose(1, 2))  # [N, positions, 4]
        return self.head(torch.tanh(self.fc(tokens)).mean(1))


class Tokens(nn.Module):
    """A ViT's embedding and pooling: a class token and positional embeddings over the examples' tokens, a row bias
    repeated at every position, self-attention (examples first or second), a projection `pooled @ proj`."""

    def __init__(self, batch_first: bool = True, mask: bool = False):
        super().__init__()
        self.cls, self.pos, self.row = (
            nn.Parameter(torch.randn(4)),
            nn.Parameter(torch.randn(4, 4)),
            nn.Parameter(torch.randn(1, 4)),
        )
        self.attn = nn.MultiheadAttention(4, 2, batch_first=batch_first)
        self.proj, self.head = nn.Parameter(torch.randn(4, 5)), nn.Linear(5, 3)
        self.mask = (
            torch.zeros(4, 4).masked_fill(torch.ones(4, 4).triu(1).bool(), float("-inf")) if mask else None
        )

    def forward(self, x):  # x [N, 3, 4]
        tokens = torch.cat([self.cls.view(1, 1, -1).expand(len(x), -1, -1), x], dim=1) + self.pos + self.row
        if not self.attn.batch_first:
            tokens = tokens.transpose(0, 1)
        mixed = self.attn(tokens, tokens, tokens, need_weights=False, attn_mask=self.mask)[0]
        pooled = (mixed if self.attn.batch_first else mixed.transpose(0, 1)).mean(1)
        return self.head(torch.tanh(pooled @ self.proj))


class Widening(nn.Module):
    """A parameter that widens its input when added (x [N, 1, 4] + P [3, 4]) and one multiplied from the left."""

    def __init__(self):
        super().__init__()
        self.wide, self.left, self.head = (
            nn.Parameter(torch.randn(3, 4)),
            nn.Parameter(torch.randn(2, 3)),
            nn.Linear(8, 3),
        )

    def forward(self, x):  # x [N, 1, 4]
        return self.head(torch.tanh(self.left @ (x + self.wide)).flatten(1))


ATTENTION = {"attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight", "attn.out_proj.bias"}
EDGE_MODELS = {
    "every closed form": (EveryClosedForm, (3, 4, 4), set()),
    "class token, positions, attention, projection": (Tokens, (3, 4), set()),
    "attention with examples second": (lambda: Tokens(batch_first=False), (3, 4), set()),
    "masked attention": (lambda: Tokens(mask=True), (3, 4), ATTENTION),
    "widening broadcast, left matmul": (Widening, (1, 4), {"wide", "left"}),
    "shared weight": (SharedWeight, (4,), {"a.weight"}),
    "weight used outside its layer": (WeightUsedOutside, (4,), {"fc2.weight"}),
    "row-normalised Linear": (row_normalised, (4,), {"0.weight"}),
    "timm StdConv2d": (standardised_conv, (3, 2, 2), {"0.weight", "2.weight"}),
}


@pytest.mark.parametrize("kind", ["true", "empirical"])
@pytest.mark.parametrize("name", list(EDGE_MODELS))
def test_edge_models_equal_curvlinops(name, kind):
    build, shape, per_example = EDGE_MODELS[name]
    torch.manual_seed(0)
    model = build().double()
    x = torch.randn(11, *shape, dtype=torch.float64)
    y = torch.randint(0, 3, (11,))
    routes = exact_routes(model, x)
    assert {n for n, r in routes.items() if r == "per-example"} == per_example  # the rest go op by op
    assert_equal_fishers(
        diagonal_fisher(model, x, y, kind, chunk_size=4), curvlinops_fisher(model, x, y, kind)
    )


@pytest.fixture(scope="module")
def embedded(small_prepared):
    """The embedded EfficientNet-Lite0 top in float64 and 24 of its real trunk features."""
    prep = small_prepared
    top = copy.deepcopy(prep.backbone.top).double()
    return top, prep.train_features[0][:24].double(), prep.config.logit_scale


@pytest.mark.parametrize("kind", ["true", "empirical"])
@pytest.mark.parametrize("classes", [2, 10])
def test_embedded_top_equals_backpack(embedded, classes, kind):
    top, x, scale = embedded
    with torch.no_grad():
        head = F.normalize(top(x[:classes]), dim=-1)  # prototypes: the first `classes` examples' embeddings
    model = TaskLogits(top, head, scale, None)
    plain = plain_top(top, head, scale, None)
    assert torch.equal(plain(x), model(x))  # BackPACK sees the same function, to the last bit
    y = torch.arange(len(x)) % classes
    assert set(exact_routes(model, x).values()) == {"conv2d"}
    ours = diagonal_fisher(model, x, y, kind, chunk_size=10)
    names = {id(p): n for n, p in model.named_parameters()}
    assert_equal_fishers(ours, backpack_fisher(plain, x, y, kind, names))


@pytest.mark.parametrize("kind", ["true", "empirical"])
def test_tiny_clip_top_equals_the_per_example_route(kind):
    """Every parameter of the CLIP top goes op by op: the patch convolution, layer norms and MLPs, attention's
    projections, the class and positional embeddings (broadcasts) and `proj` (a matmul). BackPACK has no extension
    for LayerNorm or MultiheadAttention, so the reference is the per-example route on all parameters, in float64."""
    prep = bench.one_task("tiny-clip", examples=12, lr=1e-4)
    top = copy.deepcopy(prep.backbone.top).double()
    model = TaskLogits(top, prep.heads[0].double(), prep.config.logit_scale, None)
    _, x, y = task_objective(prep, 0, tangent=False)
    # at the tower's size, as folder streams decode them: clip_input then only normalises (its resize, torchvision's,
    # cannot run inside the per-example route's vmap)
    x = torch.nn.functional.interpolate(x.double(), size=(top.size, top.size)).round().to(x.dtype)
    routes = exact_routes(model, x)
    assert {"linear", "layer_norm", "conv2d", "broadcast", "matmul"} == set(routes.values())
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    expected = functional_diagonal_fisher(
        lambda p, v: torch.func.functional_call(model, p, (v,)), params, x, y, kind, chunk_size=5
    )
    assert_equal_fishers(diagonal_fisher(model, x, y, kind, chunk_size=5), expected)
