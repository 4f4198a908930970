"""Model catalogue (`vidgen models`, `vidgen info`): reads configs and safetensors headers, loads no model."""

import json
import re
import shutil

import pytest
import torch

from vidgen import modeling
from vidgen.catalogue import (
    count_parameters,
    describe_model,
    find_recipe,
    format_bytes,
    format_count,
    list_models,
    model_config,
    safetensors_header,
)
from vidgen.cli.main import main as vidgen_main
from vidgen.errors import CheckpointError, VidgenError
from vidgen.generators.expert_transformer import cogvideox_transformer_tiny
from vidgen.modeling import write_json
from vidgen.tokenizers.cogvideox_vae import cogvideox_vae_tiny

RECIPE = "cogvideox-shapes-transformer-smoke.toml"


def make_pipeline_folder(folder, **settings):
    """A tiny random CogVideoX pipeline folder (pipeline.json + vae/ + transformer/); returns the models."""
    torch.manual_seed(0)
    vae = cogvideox_vae_tiny()
    transformer = cogvideox_transformer_tiny(in_channels=vae.config.latent_channels, text_dim=384)
    vae.save_pretrained(folder / "vae")
    transformer.save_pretrained(folder / "transformer")
    write_json(folder / "pipeline.json", {
        "_class_name": "CogVideoXPipeline", "system": "CogVideoX", "text_encoder": "minilm",
        "latent_scaling_factor": 0.7, "schedule": {}, "default_steps": 4, "default_guidance": 3.0,
        "num_frames": 9, "height": 32, "width": 48, "fps": 8, "recipe": RECIPE, **settings})
    return vae, transformer


@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("catalogue") / "tiny-t2v"
    vae, transformer = make_pipeline_folder(folder)
    return folder, vae.num_parameters() + transformer.num_parameters()


@pytest.fixture
def bundled(tmp_path, monkeypatch, pipeline_folder):
    """BUNDLED_DIR pointed at a tmp folder holding two models and a stray folder."""
    folder, _ = pipeline_folder
    bundled_dir = tmp_path / "bundled"
    shutil.copytree(folder, bundled_dir / "zeta-t2v")
    shutil.copytree(folder, bundled_dir / "alpha-tasks")
    data = json.loads((bundled_dir / "alpha-tasks" / "pipeline.json").read_text())
    data.update({"_class_name": "MagvitTaskPipeline", "system": "MAGVIT",
                 "tasks": {"predict": ["first frame"], "outpaint": ["central", "vertical"]}})
    (bundled_dir / "alpha-tasks" / "pipeline.json").write_text(json.dumps(data))
    (bundled_dir / "not-a-model").mkdir()
    (bundled_dir / "_private").mkdir()
    monkeypatch.setattr(modeling, "BUNDLED_DIR", bundled_dir)
    return bundled_dir


def test_describe_local_folder_reads_configs_and_headers(pipeline_folder):
    folder, expected_parameters = pipeline_folder
    entry = describe_model(folder)
    assert entry.name == "tiny-t2v" and not entry.bundled and entry.path == str(folder.resolve())
    assert entry.system == "CogVideoX" and entry.pipeline_class == "CogVideoXPipeline"
    assert entry.tasks == ["text-to-video"]  # inferred from the class: pipeline.json lists no tasks
    assert (entry.num_frames, entry.height, entry.width, entry.fps) == (9, 32, 48, 8.0)
    assert entry.resolution == "9x32x48"
    # tiny VAE: 4x in time, 3 downsamples (8x) in space; tiny transformer patch 2 -> sizes in steps of 16
    assert (entry.frame_step, entry.size_step) == (4, 16)
    assert entry.parameters == expected_parameters
    on_disk = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert entry.disk_bytes == on_disk > entry.parameters * 4  # float32 weights plus the JSON files
    assert entry.components == ["transformer", "vae"] and entry.recipe == RECIPE
    assert entry.default_steps == 4 and entry.default_guidance == 3.0


def test_parameter_count_from_header_matches_loaded_tensors(pipeline_folder):
    folder, _ = pipeline_folder
    weights = folder / "vae" / "model.safetensors"
    loaded = modeling.load_safetensors(weights)
    assert count_parameters(weights) == sum(t.numel() for t in loaded.values())
    header = safetensors_header(weights)
    assert set(header) - {"__metadata__"} == set(loaded)


def test_bad_files_give_clear_errors(tmp_path, pipeline_folder):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\xff" * 64)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        count_parameters(junk)
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"\x01")
    with pytest.raises(CheckpointError, match="too short"):
        count_parameters(short)
    (tmp_path / "empty").mkdir()
    with pytest.raises(VidgenError, match="neither a pipeline folder"):
        describe_model(tmp_path / "empty")
    with pytest.raises(VidgenError, match="neither a local folder nor a bundled model"):
        describe_model(tmp_path / "missing")


def test_bare_checkpoint_folder_is_described(pipeline_folder):
    folder, _ = pipeline_folder
    entry = describe_model(folder / "vae")
    assert entry.system == "CogVideoXVAE" and entry.tasks == [] and entry.pipeline_class is None
    assert entry.parameters == count_parameters(folder / "vae" / "model.safetensors")
    assert model_config(folder / "vae") == {"pipeline": None,
                                            "components": {"vae": json.loads((folder / "vae/config.json").read_text())}}


def test_list_models_lists_bundled_folders_only(bundled):
    entries = list_models()
    assert [e.name for e in entries] == ["alpha-tasks", "zeta-t2v"]
    assert all(e.bundled for e in entries)
    tasks = entries[0]
    assert tasks.system == "MAGVIT" and tasks.tasks == ["predict", "outpaint"]
    assert tasks.task_modes == {"predict": ["first frame"], "outpaint": ["central", "vertical"]}
    assert describe_model("zeta-t2v").path == str((bundled / "zeta-t2v").resolve())
    with pytest.raises(VidgenError, match="bundled models: alpha-tasks, not-a-model, zeta-t2v"):
        describe_model("nope")


def test_model_config_and_recipe(pipeline_folder):
    folder, _ = pipeline_folder
    config = model_config(folder)
    assert config["pipeline"]["num_frames"] == 9
    assert config["components"]["vae"]["_class_name"] == "CogVideoXVAE"
    assert config["components"]["transformer"]["patch_size"] == 2
    assert find_recipe(RECIPE).name == RECIPE and find_recipe(RECIPE.removesuffix(".toml")).name == RECIPE
    assert find_recipe("no-such-recipe.toml") is None and find_recipe(None) is None


def test_formatting():
    assert format_count(280_435) == "280.4k" and format_count(12_300_000) == "12.3M" and format_count(12) == "12"
    assert format_bytes(512) == "512 B" and format_bytes(3 * 2**20) == "3.0 MiB"


def test_cli_models_table_and_json(bundled, capsys, pipeline_folder):
    folder, parameters = pipeline_folder
    assert vidgen_main(["models", str(folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "SYSTEM", "TASKS", "FRAMESxHxW", "PARAMS", "DISK"]
    assert [line.split()[0] for line in lines[1:]] == ["alpha-tasks", "zeta-t2v", "tiny-t2v"]
    assert "predict, outpaint" in lines[1] and "9x32x48" in lines[2] and format_count(parameters) in lines[3]
    assert vidgen_main(["models", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in data] == ["alpha-tasks", "zeta-t2v"] and data[1]["parameters"] == parameters


def test_cli_models_with_nothing_bundled(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(modeling, "BUNDLED_DIR", tmp_path / "none")
    assert vidgen_main(["models"]) == 0
    assert "no bundled models found" in capsys.readouterr().out


def test_cli_info_shows_configs_and_recipe(capsys, pipeline_folder, tmp_path):
    folder, _ = pipeline_folder
    assert vidgen_main(["info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^system +CogVideoX$", out, re.MULTILINE) and "4k+1 frames up to 49" in out
    assert "pipeline.json:" in out and "vae/config.json:" in out and "transformer/config.json:" in out
    assert '"temporal_compression_ratio": 4' in out
    shipped = find_recipe(RECIPE).read_text().splitlines()[0]
    assert f"training recipe ({find_recipe(RECIPE)})" in out and shipped in out

    assert vidgen_main(["info", str(folder), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"]["name"] == "tiny-t2v" and data["recipe_text"].splitlines()[0] == shipped
    assert data["components"]["vae"]["latent_channels"] == 4

    other = tmp_path / "other"
    shutil.copytree(folder, other)
    settings = json.loads((other / "pipeline.json").read_text())
    settings["recipe"] = "lost-recipe.toml"
    (other / "pipeline.json").write_text(json.dumps(settings))
    assert vidgen_main(["info", str(other)]) == 0
    assert "training recipe: lost-recipe.toml (not shipped" in capsys.readouterr().out


def test_cli_info_unknown_name(bundled, capsys):
    assert vidgen_main(["info", "nope"]) == 2
    err = capsys.readouterr().err
    assert "model 'nope' is neither a local folder nor a bundled model" in err and "alpha-tasks" in err
