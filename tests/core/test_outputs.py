"""Output helpers: one-line errors for bad paths, temp files cleaned, umask honoured, strict JSON."""
import os, stat
from fslora_ref.outputs import prepare_output_dir, check_output_file, atomic_write_bytes, write_json, TMP_PREFIX
import pytest
from fslora_ref.output_lock import release_all
def test_output_paths_atomic_writes_and_strict_json(tmp_path):
    f = tmp_path/"file"; f.write_text("x")
    with pytest.raises(ValueError, match="--out must be a directory"): prepare_output_dir(f)
    with pytest.raises(ValueError, match="is a file"): prepare_output_dir(f/"sub")
    with pytest.raises(ValueError, match="is a directory"): check_output_file(tmp_path)
    d = prepare_output_dir(tmp_path/"a"/"b")
    (tmp_path/"a"/"b"/(TMP_PREFIX+"x")).write_text("y")
    prepare_output_dir(d); assert os.listdir(d) == [".fslora-lock"]
    release_all(); assert os.listdir(d) == []
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path/"p.bin", b"1")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path/"p.bin").st_mode) == 0o644
    with pytest.raises(ValueError, match="non-finite"): write_json(tmp_path/"j.json", {"a": float("inf")})
    assert not (tmp_path/"j.json").exists()
