"""`fslora verify`: table, report files, JSON schema, exit codes."""
import json

from fslora_cli.main import main
from theory import claims
from theory.paper import moments as mom

from tests.mutants import theory_mutants as M

CHEAP = "def3.1.unbiased,identity.covariance,objective.gradient,alg1.sketch_fixed,cor4.5.fedavg"

def test_verify_subset_writes_report(tmp_path, capsys):
    assert main(["verify", "--quick", "--only", CHEAP, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "def3.1.unbiased" in out and "verified" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert [c["id"] for c in report["claims"]] == CHEAP.split(",")
    for c in report["claims"]:
        assert set(c) >= {"id", "statement", "status", "evidence"} and c["status"] == "verified"
    assert "| `identity.covariance` |" in (tmp_path / "report.md").read_text()

def test_every_paper_claim_is_registered():
    ids = {c.id for c in claims.CLAIMS}
    for needed in ("def3.1.unbiased", "def3.1.second_moment", "lemma3.2.gradient", "propD4.instance",
                   "propD4.client", "propD4.global", "thm4.4.bound", "thm4.4.above_limit",
                   "cor4.5.rate", "cor4.5.fedavg", "identity.product_variance", "identity.frobenius_expectation",
                   "objective.closed_form", "alg1.round_unbiased", "alg1.stationary_point", "alg1.sketch_fixed"):
        assert needed in ids
    assert len(ids) == len(claims.CLAIMS)

def test_violated_claim_gives_exit_code_1_and_a_counterexample(tmp_path, monkeypatch, capsys):
    broken = claims.Claim("def3.1.unbiased", "E[S] = I", "exact",
                          lambda ctx: mom.check_identity("def3.1.unbiased", law=M.first_k_law))
    monkeypatch.setattr(claims, "CLAIMS", [broken])
    assert main(["verify", "--out", str(tmp_path)]) == 1
    assert "VIOLATED: def3.1.unbiased" in capsys.readouterr().out
    md = (tmp_path / "report.md").read_text()
    assert "## Counterexamples" in md and "worst_case_r_k" in md
    assert json.loads((tmp_path / "report.json").read_text())["claims"][0]["status"] == "violated"

def test_unknown_claim_id_is_a_user_error(tmp_path, capsys):
    assert main(["verify", "--only", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown claim ids ['nope']" in capsys.readouterr().err

def test_same_run_gives_identical_evidence(tmp_path):
    for d in ("a", "b"):
        assert main(["verify", "--quick", "--only", "sketch.uniform_subsets", "--out", str(tmp_path / d)]) == 0
    ev = [json.loads((tmp_path / d / "report.json").read_text())["claims"][0]["evidence"] for d in ("a", "b")]
    assert ev[0] == ev[1]


def test_quick_run_covers_every_claim_and_writes_plots(tmp_path):
    assert main(["verify", "--quick", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert [c["id"] for c in report["claims"]] == [c.id for c in claims.CLAIMS]
    statuses = {c["id"]: c["status"] for c in report["claims"]}
    assert statuses.pop("thm4.4.above_limit") == "measurement"
    identities = ("propD4.instance", "propD4.client", "propD4.global", "ours.h1.curvature", "ours.general_h.drift")
    assert {statuses.pop(i) for i in identities} == {"identity"}     # cannot fail: never reported as verified
    assert set(statuses.values()) == {"verified"}, statuses
    for png in ("lhs_vs_rhs.png", "rate_vs_T.png", "ours_bound.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "report.md").read_text()
    assert "## Theorem 4.4 per setting" in md and "## Corollary 4.5" in md and "reference (fslora_ref" in md
    assert "## Our H = 1 bound (the toolkit's own result, not the paper's)" in md
    assert "Our H = 1 bound (the textbook descent-lemma bound applied to f^S with exact V and local L_S): LHS/RHS a priori" \
        in md.split("## Closing note")[1]
    assert "Ghadimi & Lan 2013" in md and "shown to catch" in md


def test_out_must_be_a_directory(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["verify", "--only", "def3.1.unbiased", "--out", str(f)]) == 2
    assert "--out must be a directory" in capsys.readouterr().err


def test_impl_independent_numpy_example_exits_0(tmp_path, capsys):
    assert main(["verify", "--quick", "--impl", "examples/numpy_fslora.py:impl", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "implementation under test: examples/numpy_fslora" in out and "VIOLATED" not in out
    report = json.loads((tmp_path / "report.json").read_text())
    impl_claims = [c for c in report["claims"] if c["through_implementation"]]
    assert len(impl_claims) == 13 and {c["status"] for c in impl_claims} <= {"verified", "skipped", "measurement"}
    assert report["meta"]["implementation"].startswith("examples/numpy_fslora")


def test_impl_biased_mutant_exits_1(tmp_path, capsys):
    # missing_scale's runs are shared with test_convergence (one cache per target within the process)
    assert main(["verify", "--quick", "--impl", "tests.mutants.missing_scale:impl", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "VIOLATED: " in out and "alg1.round_unbiased" in out.split("VIOLATED: ")[1]
    md = (tmp_path / "report.md").read_text()
    assert "### `alg1.round_unbiased`" in md and "### `ours.h1.a_posteriori`" in md
    assert "Our H = 1 bound (the textbook descent-lemma bound applied to f^S): a priori violated, a posteriori violated." in md


def test_bad_impl_is_a_one_line_user_error(tmp_path, capsys):
    assert main(["verify", "--quick", "--impl", "nope_module:impl", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fslora verify: error:") and "nope_module" in err and "\n" not in err
    assert main(["verify", "--quick", "--impl", "fslora_ref.config:FedConfig", "--out", str(tmp_path)]) == 2
