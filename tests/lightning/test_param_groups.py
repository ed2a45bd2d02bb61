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
    """Weights in which torch's recurrent layers stack their gates: a 2-layer bidirectional LSTM (4), a GRU (3, a
    subclass of torch's), a plain RNN (1), an LSTM and a GRU cell, an LSTM with a projection (its weight_hr one
    map); attention's stacked q, k, v and attention with kdim and vdim (left whole), and plain matrices."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(20, 8)
        self.lstm = nn.LSTM(8, 6, num_layers=2, bidirectional=True)
        self.gru = type("MyGRU", (nn.GRU,), {})(12, 6)
        self.rnn = nn.RNN(6, 6)
        self.cells = nn.ModuleList([nn.LSTMCell(6, 6), nn.GRUCell(6, 6), nn.RNNCell(6, 6)])
        self.projected = nn.LSTM(6, 8, proj_size=4)
        self.attention = nn.MultiheadAttention(6, 2)
        self.cross = nn.MultiheadAttention(6, 2, kdim=4, vdim=5)
        self.head = nn.Linear(6, 20)


def test_in_spectral_groups_a_weight_of_stacked_gates_is_stepped_as_those_maps():
    model = Recurrent()
    spectral = StaceyConfig.from_source({"kinds": {"matrix": {"norm": "spectral"}}})
    groups = param_groups(model, spectral)
    _assert_each_parameter_once(model, groups)
    matrix = next(group for group in groups if group["name"] == "matrix")
    expected = {param: 4 for name, param in model.lstm.named_parameters() if name.startswith("weight")}
    expected |= {model.gru.weight_ih_l0: 3, model.gru.weight_hh_l0: 3}
    expected |= {model.cells[0].weight_ih: 4, model.cells[0].weight_hh: 4}
    expected |= {model.cells[1].weight_ih: 3, model.cells[1].weight_hh: 3}
    expected |= {model.projected.weight_ih_l0: 4, model.projected.weight_hh_l0: 4}  # (32, 6), (32, 4)
    assert len(expected) == 8 + 2 + 4 + 2  # 2 layers x 2 directions x (input, hidden) for the first LSTM
    assert matrix["blocks"] == [expected.get(param, 1) for param in matrix["params"]]
    # One map each, and attention's stacked q, k, v (a model may declare them): whole.
    for whole in (model.rnn.weight_hh_l0, model.cells[2].weight_hh, model.projected.weight_hr_l0,
                  model.attention.in_proj_weight, model.cross.q_proj_weight):  # fmt: skip
        assert any(param is whole for param in matrix["params"]) and whole not in expected
    assert "blocks" not in next(group for group in groups if group["name"] == "head")  # not a spectral group
    Stacey(groups)  # every count splits its weight's rows
    # Elementwise norms step every entry alike: the groups carry no blocks.
    assert all("blocks" not in group for group in param_groups(model, StaceyConfig()))
    # A model without stacked weights has none either.
    assert all("blocks" not in group for group in param_groups(nn.Linear(3, 4), spectral))


def test_a_declared_stack_must_be_a_parameter_of_the_model():
    model = nn.Sequential(nn.Linear(4, 12), nn.Linear(12, 2))
    spectral = StaceyConfig.from_source({"kinds": {"matrix": {"norm": "spectral"}}})
    (matrix,) = [g for g in param_groups(model, spectral, stacked={model[0].weight: 3}) if g["name"] == "matrix"]
    assert matrix["blocks"] == [3]
    with pytest.raises(ValueError, match=r"stacked matrices: Linear is not a parameter of Sequential; give each"):
        param_groups(model, spectral, stacked={model[0]: 3})  # the module, not its weight
    with pytest.raises(ValueError, match=r"a tensor of shape \(12, 4\) is not a parameter of Sequential"):
        param_groups(model, spectral, stacked={nn.Linear(4, 12).weight: 3})
    with pytest.raises(ValueError, match=r"Invalid blocks: 5 for a parameter of shape \(12, 4\) in group 'matrix'"):
        Stacey(param_groups(model, spectral, stacked={model[0].weight: 5}))
