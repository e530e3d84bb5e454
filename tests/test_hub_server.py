"""The loopback Hub serves the real huggingface_hub client: push a folder, load it back by repo id."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

try:  # tests/ as a package, or pytest's default "prepend" import mode (no __init__.py)
    from .hub_fixtures import loopback_hub, wire_hf_client  # noqa: F401
    from .hub_server import DEFAULT_TOKEN, LoopbackHub
except ImportError:
    from hub_fixtures import loopback_hub, wire_hf_client  # noqa: F401
    from hub_server import DEFAULT_TOKEN, LoopbackHub

from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError


def _assert_same_state_dict(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def _tiny_bert(folder: Path):
    import transformers

    cfg = transformers.BertConfig(
        vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, num_labels=3
    )
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(cfg).eval()
    model.save_pretrained(folder)
    return model


def _tiny_timm(folder: Path):
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=3).eval()
    save_for_hf(model, folder, safe_serialization=True)
    return model


def _cache_repos() -> list[str]:
    cache = Path(constants.HF_HUB_CACHE)
    return sorted(p.name for p in cache.glob("models--*")) if cache.is_dir() else []


def test_fixture_wires_client_in_process(loopback_hub, tmp_path):
    assert constants.ENDPOINT == loopback_hub.url
    assert constants.HUGGINGFACE_CO_URL_TEMPLATE.startswith(loopback_hub.url + "/")
    assert constants.is_offline_mode() is False
    assert constants.HF_HUB_DISABLE_XET is True
    assert Path(constants.HF_HUB_CACHE).is_relative_to(tmp_path)
    assert HfApi().endpoint == loopback_hub.url  # default endpoint follows the patched constant
    assert HfApi(token=DEFAULT_TOKEN).whoami()["name"] == loopback_hub.user


def test_wiring_overrides_offline_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # what an earlier `HF_HUB_OFFLINE=1` import leaves
    with LoopbackHub() as hub:
        wire_hf_client(monkeypatch, hub.url, tmp_path / "home")
        assert not constants.is_offline_mode()
        HfApi(token=hub.token).create_repo("org/online")
        assert HfApi().model_info("org/online").sha == hub.head("org/online")


def test_push_bert_and_from_pretrained(loopback_hub, tmp_path):
    import transformers

    hub = loopback_hub
    model = _tiny_bert(tmp_path / "bert")
    api = HfApi(endpoint=hub.url, token=DEFAULT_TOKEN)

    repo_url = api.create_repo("org/tiny")
    assert repo_url == f"{hub.url}/org/tiny" and repo_url.repo_id == "org/tiny"
    info = api.upload_folder(repo_id="org/tiny", folder_path=tmp_path / "bert", commit_message="add tiny bert")

    [commit] = hub.commits
    assert info.commit_url == commit.url == f"{hub.url}/org/tiny/commit/{commit.oid}"
    assert info.oid == commit.oid == hub.head("org/tiny")
    assert (commit.repo_id, commit.summary, commit.revision) == ("org/tiny", "add tiny bert", "main")
    assert set(commit.paths) == {"config.json", "model.safetensors"}
    assert commit.lfs_paths == ("model.safetensors",)  # binary weights went through the LFS batch/PUT path
    assert DEFAULT_TOKEN in hub.token_seen and commit.token == DEFAULT_TOKEN
    assert any(m == "PUT" and p.startswith("/__lfs__/upload/") for m, p, _ in hub.requests)
    assert hub.repo_files("org/tiny")["model.safetensors"] == (tmp_path / "bert" / "model.safetensors").read_bytes()
    remote = api.model_info("org/tiny", files_metadata=True)
    assert remote.sha == commit.oid
    lfs = {s.rfilename: s.lfs for s in remote.siblings}
    assert lfs["model.safetensors"] is not None and lfs["config.json"] is None

    # Load back by repo id, anonymously, into the fixture's (still empty) cache.
    assert _cache_repos() == []
    loaded = transformers.AutoModelForSequenceClassification.from_pretrained("org/tiny").eval()
    assert _cache_repos() == ["models--org--tiny"]
    assert isinstance(loaded, transformers.BertForSequenceClassification) and loaded.config.num_labels == 3
    _assert_same_state_dict(model, loaded)
    ids = torch.tensor([[1, 5, 7, 2]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, loaded(ids).logits)


def test_push_timm_and_create_model_from_hf_hub(loopback_hub, tmp_path):
    import timm

    hub = loopback_hub
    model = _tiny_timm(tmp_path / "timm")
    api = HfApi(endpoint=hub.url, token=DEFAULT_TOKEN)
    api.create_repo("org/tinytimm")
    api.upload_folder(repo_id="org/tinytimm", folder_path=tmp_path / "timm")
    assert hub.commits[-1].lfs_paths == ("model.safetensors",)

    loaded = timm.create_model("hf-hub:org/tinytimm", pretrained=True).eval()
    assert loaded.num_classes == 3
    _assert_same_state_dict(model, loaded)

    # snapshot_download goes through repo info + the tree listing.
    folder = Path(snapshot_download("org/tinytimm"))
    assert sorted(p.name for p in folder.iterdir()) == [".gitattributes", "config.json", "model.safetensors"]
    assert folder.name == hub.head("org/tinytimm")
    assert any("/tree/" in p for _, p, _ in hub.requests)


def test_lfs_cdn_style_redirect(tmp_path, monkeypatch):
    """With `lfs_redirect_host`, LFS files are served through a 302 to another origin, like the Hub's CDN."""
    with LoopbackHub(lfs_redirect_host="localhost") as hub:
        wire_hf_client(monkeypatch, hub.url, tmp_path / "home")
        api = HfApi(token=hub.token)
        api.create_repo("org/cdn")
        payload = bytes(range(256)) * 64
        api.upload_file(path_or_fileobj=payload, path_in_repo="w.bin", repo_id="org/cdn")
        assert hub.commits[-1].lfs_paths == ("w.bin",)
        assert Path(hf_hub_download("org/cdn", "w.bin", token=hub.token)).read_bytes() == payload
        assert ("HEAD", "/org/cdn/resolve/main/w.bin", 302) in hub.requests
        assert any(m == "GET" and p.startswith("/__lfs__/objects/") for m, p, _ in hub.requests)


@pytest.mark.parametrize("token", [None, "hf_wrong_token"], ids=["no-token", "wrong-token"])
def test_write_without_valid_token_is_401(loopback_hub, tmp_path, token):
    hub = loopback_hub
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "config.json").write_text("{}")
    bad = HfApi(endpoint=hub.url, token=token)

    with pytest.raises(HfHubHTTPError) as err:
        bad.create_repo("org/denied")
    assert err.value.response.status_code == 401
    assert not isinstance(err.value, RepositoryNotFoundError)
    assert "Authorization" in str(err.value)

    HfApi(endpoint=hub.url, token=DEFAULT_TOKEN).create_repo("org/exists")
    with pytest.raises(HfHubHTTPError) as err:
        bad.upload_folder(repo_id="org/exists", folder_path=tmp_path / "f")
    assert err.value.response.status_code == 401
    assert hub.commits == []
    assert sorted(hub.repo_files("org/exists")) == [".gitattributes"]
    if token is not None:
        assert token in hub.token_seen


def test_read_errors_and_private_repo(loopback_hub):
    hub = loopback_hub
    api = HfApi(endpoint=hub.url, token=DEFAULT_TOKEN)
    api.create_repo("org/secret", private=True)
    api.upload_file(path_or_fileobj=b'{"a": 1}', path_in_repo="config.json", repo_id="org/secret")
    assert hub.commits[-1].lfs_paths == ()  # small text file: inline base64 in the commit payload

    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/secret", "config.json")  # anonymous
    assert Path(hf_hub_download("org/secret", "config.json", token=DEFAULT_TOKEN)).read_bytes() == b'{"a": 1}'
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("org/secret", "missing.json", token=DEFAULT_TOKEN)
    with pytest.raises(RepositoryNotFoundError):
        HfApi().model_info("org/nope")
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo("org/secret")
    assert err.value.response.status_code == 409
    api.create_repo("org/secret", exist_ok=True)
