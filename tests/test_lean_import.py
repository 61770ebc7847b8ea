"""open_clip without transformers for a cold start (issue #25, item 3: cut what open_clip pulls in that the explorer
never uses), and its Hugging Face text towers given back before a model that needs one is built."""

from __future__ import annotations

import json

import pytest
from libkit import run_python

from wiseft_explorer.demo import TINY_CONFIG

transformers = pytest.importorskip("transformers")  # nothing is hidden where the optional package is missing

HF_NAME = "wiseft-tiny-hf"  # the tiny image tower with a one-layer BERT as its text tower
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "the", "red", "square", "green", "circle"]


def test_the_preloads_open_clip_leaves_out_transformers_until_a_text_tower_needs_it():
    lines = run_python("import sys\n"
                       "from wiseft_explorer.core.lean_import import import_open_clip, prepare_text_tower\n"
                       "oc = import_open_clip()\n"
                       "print('transformers' in sys.modules, oc.hf_model.transformers is None)\n"
                       "prepare_text_tower('ViT-B-32', oc.get_model_config('ViT-B-32'))  # a text tower of its own\n"
                       "print('transformers' in sys.modules)\n"
                       "prepare_text_tower('roberta-ViT-B-32', oc.get_model_config('roberta-ViT-B-32'))\n"
                       "from open_clip.model import HFTextEncoder  # imported by open_clip before the restore\n"
                       "print(oc.hf_model.transformers is sys.modules['transformers'],\n"
                       "      HFTextEncoder.__init__.__globals__['transformers'] is sys.modules['transformers'])\n")
    assert lines == ["False True", "False", "True True"]


def test_a_model_with_a_hugging_face_text_tower_loads_after_the_lean_import(tmp_path):
    """A tiny BERT as the text tower of a registered config, built through the explorer's loader in a process that
    imported open_clip the preload's way (open_clip raised "Please `pip install transformers`" without the restore)."""
    from transformers import BertConfig, BertModel, BertTokenizer

    tower = tmp_path / "bert"
    tower.mkdir()
    (tower / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    BertTokenizer(str(tower / "vocab.txt")).save_pretrained(tower)
    BertModel(BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=32)).save_pretrained(tower)  # random weights
    config = tmp_path / f"{HF_NAME}.json"
    config.write_text(json.dumps({"embed_dim": TINY_CONFIG["embed_dim"], "vision_cfg": TINY_CONFIG["vision_cfg"],
                                  "text_cfg": {"hf_model_name": str(tower), "hf_tokenizer_name": str(tower),
                                               "hf_proj_type": "linear",
                                               "hf_pooler_type": "cls_pooler", "context_length": 16}}))
    lines = run_python("import sys, torch\n"
                       "from wiseft_explorer.core.lean_import import import_open_clip\n"
                       "import_open_clip()\n"
                       "from wiseft_explorer.core import load_clip\n"
                       "from wiseft_explorer.experiment import ModelSpec\n"
                       f"clip = load_clip(ModelSpec({HF_NAME!r}, None, __import__('pathlib').Path({str(config)!r})))\n"
                       "tokens = clip.tokenizer(['a photo of the red square'])\n"
                       "with torch.no_grad():\n"
                       "    print(type(clip.model.text).__name__, tuple(clip.model.encode_text(tokens).shape))\n")
    assert lines[-1] == "HFTextEncoder (1, 16)"


def test_the_servers_preload_imports_everything_a_cold_page_needs_but_transformers():
    lines = run_python("import sys\n"
                       "from wiseft_explorer.ui import preload\n"
                       "preload.os.environ[preload.ENV_PRELOAD] = '1'\n"
                       "preload._preload(preload.default_experiment())\n"
                       "print(sorted(preload.timings) == sorted(preload.MODULES), 'transformers' in sys.modules)\n")
    assert lines[-1] == "True False"
