"""The backbone contract: every backbone, loaded the public way, is a `Backbone` and keeps each promise.

The strategies, the head, the feature cache and saving use only these members, so a backbone that
passes here works with all of them. Parametrised over every backbone kind the tests build (tiny
random BERT, RoBERTa and ResNet, as in conftest), the way timm tests every registered model.
"""

from __future__ import annotations

import inspect
import itertools

import pytest
import torch
from conftest import IMAGE_SIZE
from torch import nn

from nlp_transfer.backbones import Backbone
from nlp_transfer.backbones.text import TextBackbone, load_text_backbone
from nlp_transfer.backbones.vision import VisionBackbone, load_vision_backbone
from nlp_transfer.errors import StrategyError

KINDS = ["bert", "roberta", "resnet"]
DEPTH = {"bert": 2, "roberta": 2, "resnet": 4}  # conftest: 2 transformer layers; ResNet's 4 stages
CONTRACT = {"feature_size", "pooling", "pool_layers", "encoder", "base_encoder", "model_type", "has_adapters",
            "forward", "stem", "blocks", "default_lora_targets", "linear_layer_names"}
MEMBERS = set(Backbone.__annotations__) | {name for name in vars(Backbone) if not name.startswith("_")}


def load(kind, model_dirs, resnet_dir, **options):
    """(backbone, a small batch for it) through the public loading functions."""
    if kind == "resnet":
        return load_vision_backbone(str(resnet_dir), **options), {"pixel_values": torch.randn(3, 3, IMAGE_SIZE, IMAGE_SIZE)}
    tokenizer, backbone = load_text_backbone(str(model_dirs[kind]), **options)
    batch = tokenizer(["good movie", "the plot was very dull", "a film"], padding=True, return_tensors="pt")
    return backbone, dict(batch)


@pytest.fixture(params=KINDS)
def loaded(request, model_dirs, resnet_dir):
    return (request.param, *load(request.param, model_dirs, resnet_dir))


def first_parameter_index(backbone: nn.Module, module: nn.Module) -> int:
    """Where the module's first parameter comes in the backbone's own (registration) order."""
    order = {id(p): i for i, p in enumerate(backbone.parameters())}
    return min(order[id(p)] for p in module.parameters())


def test_the_contract_declares_what_the_shared_code_uses():
    assert MEMBERS == CONTRACT


def test_backbones_implement_the_contract(loaded):
    kind, backbone, _ = loaded
    assert isinstance(backbone, Backbone) and isinstance(backbone, nn.Module)
    assert isinstance(backbone, VisionBackbone if kind == "resnet" else TextBackbone)
    # Python >= 3.12 looks protocol members up statically (no nn.Module.__getattr__): they must all be found so
    for name in MEMBERS:
        inspect.getattr_static(backbone, name)
    assert isinstance(backbone.model_type, str) and backbone.model_type
    assert isinstance(backbone.pooling, str) and backbone.pooling
    assert backbone.pool_layers == 1 and backbone.has_adapters is False
    assert backbone.encoder is backbone.base_encoder and backbone.encoder in backbone.children()


def test_blocks_are_ordered_bottom_to_top_and_the_stem_is_apart(loaded):
    kind, backbone, _ = loaded
    blocks = backbone.blocks()
    assert len(blocks) == DEPTH[kind] and all(isinstance(b, nn.Module) and list(b.parameters()) for b in blocks)
    starts = [first_parameter_index(backbone, b) for b in [backbone.stem(), *blocks]]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    in_blocks = {id(p) for b in blocks for p in b.parameters()}
    stem = list(backbone.stem().parameters())
    assert stem and not any(id(p) in in_blocks for p in stem)
    for lower, upper in itertools.pairwise(blocks):  # no parameter in two blocks
        assert not {id(p) for p in lower.parameters()} & {id(p) for p in upper.parameters()}


def test_feature_size_is_the_width_of_forward(loaded):
    _, backbone, batch = loaded
    backbone.eval()
    with torch.no_grad():
        features = backbone(**batch)
    assert features.shape == (3, backbone.feature_size)


@pytest.mark.parametrize("kind", ["bert", "roberta"])
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_text_feature_size_holds_for_every_pooling(kind, pooling, model_dirs, resnet_dir):
    backbone, batch = load(kind, model_dirs, resnet_dir, pooling=pooling, pool_layers=2)
    assert (backbone.pooling, backbone.pool_layers) == (pooling, 2)
    with torch.no_grad():
        assert backbone.eval()(**batch).shape == (3, backbone.feature_size)


def test_default_lora_targets_are_linear_layers_peft_accepts(loaded):
    from peft import LoraConfig, get_peft_model

    _, backbone, batch = loaded
    targets = backbone.default_lora_targets()
    assert targets and set(targets) <= set(backbone.linear_layer_names())
    plain = backbone.encoder
    backbone.encoder = get_peft_model(plain, LoraConfig(r=2, lora_alpha=4, target_modules=targets))
    assert backbone.has_adapters and backbone.base_encoder is plain and isinstance(backbone, Backbone)
    with torch.no_grad():
        assert backbone.eval()(**batch).shape == (3, backbone.feature_size)


def test_pool_layers_is_checked_whenever_it_is_set(model_dirs, resnet_dir):
    text, _ = load("bert", model_dirs, resnet_dir)
    text.pool_layers = 2
    with pytest.raises(StrategyError, match=r"pool_layers=3, but this model has 2 layers"):
        text.pool_layers = 3
    assert text.pool_layers == 2
    vision, _ = load("resnet", model_dirs, resnet_dir)
    vision.pool_layers = 1
    with pytest.raises(StrategyError, match=r"pool_layers=2, but a timm backbone pools its last stage only"):
        vision.pool_layers = 2


class _Complete:
    """Every member of the contract, and nothing else: the stub the missing-member test takes apart."""

    feature_size, pooling, pool_layers, model_type, has_adapters = 8, "mean", 1, "stub", False
    encoder = base_encoder = None

    def forward(self, **batch): ...

    def stem(self): ...

    def blocks(self): ...

    def default_lora_targets(self): ...

    def linear_layer_names(self): ...


def test_the_stub_has_every_member():
    assert isinstance(_Complete(), Backbone)


@pytest.mark.parametrize("missing", sorted(CONTRACT))
def test_an_object_lacking_a_member_is_not_a_backbone(missing):
    members = {k: v for k, v in vars(_Complete).items() if not k.startswith("__") and k != missing}
    assert not isinstance(type("Incomplete", (), members)(), Backbone)
