"""The id encoder of ``mmprep build`` (mmprep/filter/encode.py): a stream of batches gets exactly the codes of
one first-appearance encoding of everything, whatever the batch sizes, id lengths or hash collisions."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import mmprep.filter.encode as encode_mod
from mmprep.filter.encode import (
    MAX_ID_BYTES,
    IdTooLongError,
    Vocabulary,
    encode_first_appearance,
    pack_ids,
    unpack_ids,
    words_for,
)


def pareto_ids(n: int, seed: int) -> pa.Array:
    rng = np.random.default_rng(seed)
    return pa.array([f"u{k}" for k in (rng.pareto(1.1, n) * 100).astype(int)])


@pytest.mark.parametrize("slice_rows", [1 << 20, 1_000])  # one slice a batch, and batches cut into slices
def test_batches_get_the_codes_of_one_pass_over_everything(monkeypatch, slice_rows):
    monkeypatch.setattr(encode_mod, "SLICE_ROWS", slice_rows)
    ids = pareto_ids(30_000, 3)
    expected_codes, expected_vocab = encode_first_appearance(ids)
    vocab = Vocabulary()
    cuts = [0, 7, 7, 2_000, 2_001, 15_000, 30_000]  # an empty batch and a one-row batch among them
    parts = [vocab.encode(ids.slice(a, b - a)) for a, b in zip(cuts, cuts[1:], strict=False)]
    assert len(expected_vocab) > 1_000
    assert np.array_equal(np.concatenate(parts), expected_codes)
    assert vocab.ids().combine_chunks().equals(expected_vocab)
    # after the hash table is dropped (compact) the ids stay, and encoding rebuilds it: forgetting the ids of
    # the last batches and encoding them again gives the same codes
    vocab.compact()
    assert vocab.ids().combine_chunks().equals(expected_vocab)
    vocab.truncate(len(encode_first_appearance(ids.slice(0, 2_001))[1]))
    again = [vocab.encode(ids.slice(2_001, 12_999)), vocab.encode(ids.slice(15_000))]
    assert len(vocab) == len(expected_vocab)
    assert np.array_equal(np.concatenate(again), expected_codes[2_001:])


def test_a_chunked_column_of_many_small_chunks_is_encoded_in_order():
    ids = pareto_ids(20_000, 4)
    chunked = pa.chunked_array([ids.slice(a, 137) for a in range(0, 20_000, 137)])
    expected_codes, expected_vocab = encode_first_appearance(ids)
    vocab = Vocabulary()
    assert np.array_equal(vocab.encode(chunked), expected_codes)
    assert vocab.ids().combine_chunks().equals(expected_vocab)
    large = Vocabulary()
    assert np.array_equal(large.encode(chunked.cast(pa.large_string())), expected_codes)
    assert large.ids().type == pa.large_string()


def test_keys_tell_apart_ids_that_differ_only_in_length_or_nul_bytes():
    ids = pa.array(["", "\x00", "a", "a\x00", "a\x00\x00", "é", "😀", "abcdefg", "abcdefgh", "abcdefgh\x00"])
    keys = pack_ids(ids, words_for(10))
    assert keys.shape == (10, 2)
    assert len(np.unique(keys, axis=0)) == 10
    assert unpack_ids(keys).equals(ids)
    # a slice reads its own ids (Arrow offsets that do not start at 0)
    assert np.array_equal(pack_ids(ids.slice(3, 4), 2), keys[3:7])
    codes = Vocabulary().encode(pa.array(["a", "a\x00", "", "a", "\x00", ""]))
    assert codes.tolist() == [0, 1, 2, 0, 3, 2]


def test_longer_ids_arriving_later_widen_the_keys_and_keep_the_codes():
    vocab = Vocabulary()
    first = vocab.encode(pa.array(["x", "yy", "x"]))
    assert vocab.words == 1
    second = vocab.encode(pa.array(["z" * 30, "yy", "w", "z" * 30, "x"]))
    assert vocab.words == 4
    assert first.tolist() + second.tolist() == [0, 1, 0, 2, 1, 3, 2, 0]
    assert vocab.ids().to_pylist() == ["x", "yy", "z" * 30, "w"]
    longest = "q" * MAX_ID_BYTES
    assert vocab.encode(pa.array([longest, "x"])).tolist() == [4, 0]
    assert vocab.id_of(4) == longest
    with pytest.raises(IdTooLongError) as error:
        vocab.encode(pa.array(["x", "y", "q" * (MAX_ID_BYTES + 1)]))
    assert (error.value.row, error.value.length) == (2, MAX_ID_BYTES + 1)
    with pytest.raises(ValueError, match="null"):
        vocab.encode(pa.array(["x", None]))


def test_ids_that_share_home_slots_still_get_exact_codes(monkeypatch):
    """Every id hashed to one of 3 slots: long probe runs, claims of one slot by many new ids at once."""
    home = encode_mod._slots_of
    monkeypatch.setattr(encode_mod, "_slots_of", lambda keys, bits: home(keys, bits) % 3)
    rng = np.random.default_rng(2)
    pool = [f"u{k}" for k in range(400)]
    batches = [pa.array([pool[k] for k in rng.integers(0, 400, 500)]) for _ in range(5)]
    vocab = Vocabulary()
    parts = [vocab.encode(b) for b in batches]
    expected_codes, expected_vocab = encode_first_appearance(pa.chunked_array(batches))
    assert np.array_equal(np.concatenate(parts), expected_codes)
    assert vocab.ids().combine_chunks().equals(expected_vocab)


def test_take_and_id_of_give_the_ids_of_codes(monkeypatch):
    monkeypatch.setattr(encode_mod, "SLICE_ROWS", 700)  # take and ids work in several pieces
    rng = np.random.default_rng(8)
    ids = pa.array([f"x{k}" for k in rng.permutation(5_000)])
    vocab = Vocabulary()
    codes = np.concatenate([vocab.encode(ids.slice(a, 1_000)) for a in range(0, 5_000, 1_000)])
    assert np.array_equal(codes, np.arange(5_000))  # distinct ids: codes in row order
    sample = rng.integers(0, 5_000, 300)
    assert vocab.take(sample).equals(ids.take(pa.array(sample)))
    assert len(vocab.take(np.zeros(0, dtype=np.int64))) == 0
    assert vocab.id_of(4_321) == ids[4_321].as_py()
    with pytest.raises(IndexError):
        vocab.take(np.array([5_000]))
    vocab.compact()
    assert vocab.take(sample).equals(ids.take(pa.array(sample)))
    assert vocab.encode(pa.array(["new", "x0", "new"])).tolist() == [
        5_000,
        codes[ids.index("x0").as_py()],
        5_000,
    ]
    vocab.truncate(2_500)
    assert len(vocab) == 2_500 and vocab.ids().combine_chunks().equals(ids.slice(0, 2_500))


def test_runs_of_one_id_are_looked_up_once(monkeypatch):
    """A dump grouped by product repeats each item id in a run of rows: one lookup a run, the same codes."""
    rng = np.random.default_rng(6)
    items = pareto_ids(3_000, 7)
    runs = rng.integers(1, 20, len(items))
    ids = items.take(pa.array(np.repeat(np.arange(len(items)), runs)))
    looked_up = []
    find = Vocabulary._find
    monkeypatch.setattr(
        Vocabulary, "_find", lambda self, keys: looked_up.append(len(keys)) or find(self, keys)
    )
    vocab = Vocabulary()
    codes = np.concatenate([vocab.encode(ids.slice(a, 5_000)) for a in range(0, len(ids), 5_000)])
    expected_codes, expected_vocab = encode_first_appearance(ids)
    assert np.array_equal(codes, expected_codes)
    assert vocab.ids().combine_chunks().equals(expected_vocab)
    # one row a run (equal neighbouring items form one run too; a run cut by a batch boundary counts twice)
    run_starts = 1 + np.count_nonzero(np.asarray(ids[1:].to_pylist()) != np.asarray(ids[:-1].to_pylist()))
    assert run_starts <= sum(looked_up) <= run_starts + len(ids) // 5_000
