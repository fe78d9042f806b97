import copy

import pytest
import yaml

import check_config
from common import UserError
from conftest import ROOT


@pytest.fixture
def config(monkeypatch):
    monkeypatch.chdir(ROOT)  # data paths in the config are relative to the repository
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def with_default_delimiter(config):
    expected = copy.deepcopy(config)
    expected["datasets"]["spacex"]["delimiter"] = ","
    return expected


def test_repository_config_is_valid_and_complete(config):
    assert check_config.check_config(config) == with_default_delimiter(config)


def test_schema_defaults_equal_the_shipped_config(config):
    minimal = {"datasets": config["datasets"], "models": config["models"]}
    assert check_config.check_config(minimal) == with_default_delimiter(config)


def test_dataset_columns_default_to_standard_names(config, tmp_path):
    """Columns not named in the config are found in the file's header by their role's name,
    which also says the data set's shape."""
    import prepare_data

    config["datasets"] = {"x": {"path": "config/data/spacex.csv"}}
    checked = check_config.check_config(config)
    assert checked["datasets"]["x"] == {"path": "config/data/spacex.csv", "group": "group", "delimiter": ","}
    for header, shape, columns in [
        ("group,trials,successes", "binomial", {"trials": "trials", "successes": "successes"}),
        ("study,estimate,se", "effects", {"estimate": "estimate", "se": "se"}),
        ("trial,treated_trials,treated_events,control_trials,control_events", "two_arm",
         {role: role for role in ("treated_trials", "treated_events", "control_trials", "control_events")}),
    ]:
        (tmp_path / "x.csv").write_text(header + "\n")
        found = prepare_data.resolve("x", {"path": str(tmp_path / "x.csv"), "group": "g", "delimiter": ","})
        assert found == (shape, {"group": "g", **columns})


def test_null_model_settings_become_empty(config):
    config["models"]["hierarchical"] = None
    assert check_config.check_config(config)["models"]["hierarchical"] == {}


def with_change(config, path, value):
    changed = copy.deepcopy(config)
    node = changed
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return changed


BAD = [
    (("sampling", "drawz"), 5, "sampling.drawz: unknown key; did you mean 'draws'?"),
    (("sampling", "draws"), 0, "sampling.draws"),
    (("sampling", "tune"), -1, "sampling.tune"),
    (("sampling", "chains"), 0, "sampling.chains"),
    (("sampling", "draws"), "many", "sampling.draws: 'many' is not of type 'integer'"),
    (("sampling", "sampler"), "nuts", "sampling.sampler: 'nuts' is not one of"),
    (("models", "hierarchical", "target_accept"), 1.0, "models.hierarchical.target_accept"),
    (("models", "hierarchical", "target_accept"), 0, "models.hierarchical.target_accept"),
    (("models", "hierarchical", "target_acept"), 0.9, "did you mean 'target_accept'?"),
    (("models", "hierarchicl"), {}, "models.hierarchicl: no model file"),
    (("predic",), {}, "predic: unknown key; did you mean 'predict'?"),
    (("predict", "new_trials"), 0, "predict.new_trials"),
    (("diagnostics", "strict"), "maybe", "diagnostics.strict"),
    (("datasets", "spacex", "path"), "config/data/missing.csv", "datasets.spacex.path: config/data/missing.csv: file not found"),
    (("datasets", "spacex", "path"), "config/data", "is a directory"),
    (("datasets", "spacex", "colour"), "x", "datasets.spacex.colour: unknown key"),
    (("plots", "ci_prob"), 1.5, "plots.ci_prob"),
]


@pytest.mark.parametrize("path,value,message", BAD)
def test_bad_config_names_the_key(config, path, value, message):
    with pytest.raises(UserError) as caught:
        check_config.check_config(with_change(config, path, value))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name", ["../x", "/abs", "a/b", "", ".hidden"])
def test_dataset_names_that_could_escape_results_are_rejected(config, name):
    config["datasets"] = {name: {"path": "config/data/spacex.csv"}}
    with pytest.raises(UserError, match="datasets"):
        check_config.check_config(config)


@pytest.mark.parametrize("name", ["report.html"])
def test_dataset_names_that_clash_with_outputs_are_rejected(config, name):
    config["datasets"] = {name: {"path": "config/data/spacex.csv"}}
    with pytest.raises(UserError, match="reserved"):
        check_config.check_config(config)


def test_dataset_named_like_a_model_is_rejected(config):
    config["datasets"] = {"hierarchical": {"path": "config/data/spacex.csv"}}
    with pytest.raises(UserError, match="share its name with a model"):
        check_config.check_config(config)


def test_model_file_can_live_elsewhere(config, tmp_path):
    custom = tmp_path / "mine.py"
    custom.write_text((ROOT / "scripts" / "models" / "hierarchical.py").read_text())
    config["models"]["mine"] = {"file": str(custom)}
    assert check_config.model_file("mine", check_config.check_config(config)["models"]["mine"]) == custom


def test_command_line_strings_become_the_types_the_schema_wants(config):
    # `--config sampling='{draws: 100}'` delivers nested values as strings.
    config["sampling"].update(draws="100", seed="7")
    config["models"]["hierarchical"]["target_accept"] = "0.9"
    config["models"]["full_pooling"]["target_accept"] = "null"
    config["diagnostics"]["strict"] = "true"
    checked = check_config.check_config(config)
    assert checked["sampling"]["draws"] == 100 and checked["sampling"]["seed"] == 7
    assert checked["models"]["hierarchical"]["target_accept"] == 0.9
    assert checked["models"]["full_pooling"]["target_accept"] is None
    assert checked["diagnostics"]["strict"] is True
    assert checked["sampling"]["sampler"] == "nutpie"


def test_sbc_models_must_be_configured_models(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    assert check_config.check_config(config)["sbc"]["models"] == ["hierarchical", "hierarchical_logit"]
    config["sbc"] = {"models": ["hierarchical", "hierarchicl"]}
    with pytest.raises(UserError, match=r"config key sbc.models: no model 'hierarchicl'; did you mean 'hierarchical'"):
        check_config.check_config(config)
    # Listed models that this config does not fit are skipped.
    config["sbc"] = {"models": ["hierarchical", "hierarchical_logit"]}
    config["models"] = {"no_pooling": {}, "hierarchical": {}}
    assert check_config.check_config(config)["sbc"]["models"] == ["hierarchical"]
