import pytest
from torch import nn
from torchvision.models import resnet18

from stacey_lightning.lightning.config import StaceyConfig
from stacey_lightning.lightning.param_groups import check_groups, param_groups
from stacey_lightning.optim.optimizer import Stacey


class TinyTransformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(50, 16)
        layer = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(16, 50)
        self.head.weight = self.embedding.weight  # tied: one parameter, two owners


def _kinds(groups):
    return {group["kind"]: group for group in groups}


def _assert_each_parameter_once(model, groups):
    check_groups(model, groups)
    grouped = [param for group in groups for param in group["params"]]
    assert len(grouped) == len({id(param) for param in grouped})
    assert {id(param) for param in grouped} == {id(param) for param in model.parameters() if param.requires_grad}


def test_transformer_kinds_and_coverage():
    model = TinyTransformer()
    groups = param_groups(model, StaceyConfig(weight_decay=0.1))
    _assert_each_parameter_once(model, groups)
    kinds = _kinds(groups)
    assert set(kinds) == {"matrix", "embedding", "vector"}
    assert kinds["embedding"]["params"] == [model.embedding.weight]
    layer = model.encoder.layers[0]
    assert any(param is layer.self_attn.in_proj_weight for param in kinds["matrix"]["params"])
    assert any(param is layer.norm1.weight for param in kinds["vector"]["params"])
    assert kinds["matrix"]["weight_decay"] == 0.1 and kinds["vector"]["weight_decay"] == 0.0


def test_resnet_kinds_coverage_and_overrides():
    model = resnet18(num_classes=10)
    model.fc.bias.requires_grad_(False)
    config = StaceyConfig(
        lr=0.1, p=4.0, weight_decay=0.01, kinds={"conv": {"p": 2.0, "lr_scale": 0.5}, "vector": {"weight_decay": 0.001}}
    )
    groups = param_groups(model, config)
    _assert_each_parameter_once(model, groups)
    kinds = _kinds(groups)
    assert [group["kind"] for group in groups] == ["matrix", "conv", "vector"]
    assert kinds["conv"]["p"] == 2.0 and kinds["conv"]["lr"] == 0.05 and kinds["conv"]["weight_decay"] == 0.01
    assert kinds["matrix"]["params"] == [model.fc.weight] and kinds["matrix"]["p"] == 4.0
    assert kinds["vector"]["weight_decay"] == 0.001
    assert all(param is not model.fc.bias for param in kinds["vector"]["params"])
    optimizer = Stacey(groups, foreach=True)  # the groups are valid Stacey param groups
    assert [group["p"] for group in optimizer.param_groups] == [4.0, 2.0, 4.0]


def test_custom_classifier_and_check_groups_errors():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    groups = param_groups(model, StaceyConfig(), kind_of=lambda owner, param: "matrix")
    assert [group["kind"] for group in groups] == ["matrix"]
    with pytest.raises(ValueError, match="'bias'"):
        param_groups(model, StaceyConfig(), kind_of=lambda owner, param: "bias")
    with pytest.raises(ValueError, match=r"'1.weight' is in 0"):
        check_groups(model, [{"params": [model[0].weight, model[0].bias, model[1].bias]}])
    with pytest.raises(ValueError, match=r"'0.weight' is in 2"):
        check_groups(model, [{"params": list(model.parameters())}, {"params": [model[0].weight]}])


def test_kinds_come_from_module_types_when_sharding_flattens_shapes():
    """FSDP1 (FSDPStrategy, CUDA only) hands the optimizer 1-D flat views of the weights: their kinds must
    still be those of the unsharded model."""
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 6), nn.LayerNorm(6), nn.Conv1d(6, 2, 3))
    kinds = [group["kind"] for group in param_groups(model, StaceyConfig())]
    for module in model:
        for name, param in list(module.named_parameters(recurse=False)):
            setattr(module, name, nn.Parameter(param.detach().reshape(-1)))  # what flattening leaves
    flattened = param_groups(model, StaceyConfig())
    assert [group["kind"] for group in flattened] == kinds == ["matrix", "conv", "embedding", "vector"]
    assert [len(group["params"]) for group in flattened] == [1, 1, 1, 4]  # vectors: 2 biases, 2 norm params
    assert [group["name"] for group in flattened] == kinds  # LearningRateMonitor: lr-Stacey/matrix, ...


class Recurrent(nn.Module):
    """Weights in which torch's modules stack maps: a 2-layer LSTM (4 gates), a GRU (3), a plain RNN (1),
    attention's q, k, v (3), and plain matrices around them."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(20, 8)
        self.lstm = nn.LSTM(8, 6, num_layers=2, bidirectional=True)
        self.gru = nn.GRU(12, 6)
        self.rnn = nn.RNN(6, 6)
        self.attention = nn.MultiheadAttention(6, 2)
        self.head = nn.Linear(6, 20)


def test_in_spectral_groups_a_weight_of_stacked_maps_is_stepped_as_those_maps():
    model = Recurrent()
    spectral = StaceyConfig.from_source({"kinds": {"matrix": {"norm": "spectral"}}})
    groups = param_groups(model, spectral)
    _assert_each_parameter_once(model, groups)
    matrix = next(group for group in groups if group["name"] == "matrix")
    expected = {param: 4 for name, param in model.lstm.named_parameters() if name.startswith("weight")}
    expected |= {model.gru.weight_ih_l0: 3, model.gru.weight_hh_l0: 3}
    expected |= {model.attention.in_proj_weight: 3}
    assert len(expected) == 8 + 2 + 1  # 2 layers x 2 directions x (input, hidden) for the LSTM
    assert matrix["blocks"] == [expected.get(param, 1) for param in matrix["params"]]
    assert any(param is model.rnn.weight_hh_l0 for param in matrix["params"])  # one map: whole
    assert "blocks" not in next(group for group in groups if group["name"] == "head")  # not a spectral group
    Stacey(groups)  # every count splits its weight's rows
    # Elementwise norms step every entry alike: the groups carry no blocks.
    assert all("blocks" not in group for group in param_groups(model, StaceyConfig()))
    # A model without stacked weights has none either.
    assert all("blocks" not in group for group in param_groups(nn.Linear(3, 4), spectral))
