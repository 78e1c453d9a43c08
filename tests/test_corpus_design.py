"""The generated corpora as a learning benchmark: text with structure and a long tail,
many distinct voices, held-out speakers, a learnable speaking rate. Most of these look at
the plans; the speaking-rate test renders a few utterances (about a second)."""

import statistics

import collections
import random
from pathlib import Path

from espnet_iml.corpus import aishell, librispeech, synth, text


def _sentences(fn, n=2000, seed=3):
    rng = random.Random(seed)
    return [fn(rng)[0].split() for _ in range(n)]


def test_english_grammar_lengths_and_frequencies():
    sents = _sentences(text.english_sentence)
    lengths = [len(s) for s in sents]
    assert min(lengths) >= 3 and max(lengths) <= text.MAX_WORDS
    assert 5.0 <= sum(lengths) / len(lengths) <= 8.0
    counts = collections.Counter(w for s in sents for w in s)
    vocab = set(text.english_vocabulary())
    assert {w.lower() for w in counts} <= vocab
    # Zipf-like: the most frequent word is a function word with several percent of tokens,
    # and most of the vocabulary is actually used (a long tail, not a handful of words).
    top, n_top = counts.most_common(1)[0]
    assert top == "THE" and n_top / sum(counts.values()) > 0.05
    assert len(counts) > 0.9 * len(vocab)
    # Structure: a verb follows the subject in most sentences (not uniform word salad).
    verbs = {v.upper() for v, _ in text.VERBS}
    assert sum(any(w in verbs for w in s) for s in sents) > 0.7 * len(sents)


def test_english_vocabulary_has_no_listed_homophones():
    vocab = set(text.english_vocabulary())
    for a, b in [("red", "read"), ("no", "know"), ("for", "four"), ("to", "two"),
                 ("there", "their"), ("new", "knew"), ("our", "hour"), ("by", "buy")]:
        assert not {a, b} <= vocab, (a, b)


def test_mandarin_grammar_uses_lexicon():
    rng = random.Random(0)
    for _ in range(500):
        words, pinyin = text.mandarin_sentence(rng)
        syllables = pinyin.split()
        assert len(syllables) == len(words.replace(" ", ""))  # one syllable per character
        assert all(s[-1] in "12345" for s in syllables)
        assert all(w in text.MANDARIN_WORDS for w in words.split())


def test_librispeech_small_plan_has_many_held_out_voices():
    chapters = librispeech.plan(Path("unused"), 0, librispeech.SIZES["small"])
    speakers = {}
    for ch in chapters:
        split = dict((n, s) for n, s, _ in librispeech.SUBSETS)[ch.subset]
        speakers.setdefault(split, set()).add(ch.speaker)
    assert len(speakers["train"]) >= 150
    assert {s.engine for s in speakers["train"]} == {"espeak", "flite", "festival"}
    held_out = speakers["dev"] | speakers["test"]
    assert not held_out & speakers["train"]
    # espeak-ng held-out speakers read with voice+variant pairs no training speaker has.
    train_espeak = {s.voice for s in speakers["train"] if s.engine == "espeak"}
    assert not {s.voice for s in held_out if s.engine == "espeak"} & train_espeak
    # The "other" speakers are the hard ones, with noise drawn for every utterance.
    for ch in chapters:
        assert ch.speaker.hard == ("other" in ch.subset)
        assert all((j.snr_db is not None) == ch.speaker.hard for j in ch.jobs)


def _words_per_minute(job):
    # No padding: the rate of the speech itself, as the synthesizer's silences are trimmed.
    out = job.out.replace(".flac", ".wav")
    seconds = synth.render(synth.Job(**{**job.__dict__, "out": out, "pad_start": 0.0,
                                        "pad_end": 0.0}))
    return len(job.text.split()) / seconds * 60


def test_librispeech_clean_speakers_read_at_librispeech_pace(tmp_path):
    """Clean English speakers read at roughly LibriSpeech's pace, not the synthesizers'
    ~220-260 words a minute, which packs ~15 BPE pieces a second into 25 encoder frames."""
    chapters = librispeech.plan(tmp_path, 0, librispeech.SIZES["small"])
    clean = {}
    for ch in chapters:
        if ch.subset == "train-clean-100" and ch.speaker.engine in ("espeak", "flite"):
            clean.setdefault(ch.speaker.engine, []).append(ch.jobs[0])
    # Every engine: a missing scale on one of them would put it at ~220 words a minute.
    for engine, jobs in clean.items():
        rates = [_words_per_minute(job) for job in jobs[:6]]
        assert 125 <= statistics.median(rates) <= 195, (engine, rates)
        assert max(rates) <= 270, (engine, rates)


def test_aishell_small_plan_speakers():
    utts, speakers = aishell.plan(Path("unused"), 0, aishell.SIZES["small"])
    by_split = collections.defaultdict(set)
    for u in utts:
        by_split[u.split].add(u.spk)
    assert len(by_split["train"]) >= 150
    assert not (by_split["dev"] | by_split["test"]) & by_split["train"]
    descriptions = [s.description for s in speakers.values()]
    assert len(set(descriptions)) == len(descriptions)


def test_transform_resamples_before_pitch_shift():
    spk = synth.Speaker("flite", "kal", 1.0, 50, -550, 0.0, 3.0)
    job = synth.make_job(spk, "hello there", Path("x.wav"), random.Random(0))
    fx = synth.transform_effects(job)
    assert fx[:2] == ["rate", str(synth.SAMPLE_RATE)] and fx.index("pitch") > 0
