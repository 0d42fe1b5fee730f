"""Federated instruction data: synthetic task families with a Dirichlet(alpha) non-IID split
(scored by exact match), and the split of given example pools over clients. The commonsense
JSON format (docs/spec.md §6) is read by ``commonsense.py``.

An example is ``Example(family, prompt, answer)``; the prompt already carries the
Alpaca-style template and the answer is what greedy decoding must reproduce exactly.
"""
from __future__ import annotations

from collections import Counter
from typing import NamedTuple

import numpy as np

from fslora_ref.seeding import SERVER, stream
from fslora_ref.validation import check_int, check_positive_float

TEMPLATE = "### Instruction:\n{instruction}\n\n### Response:\n"
TEMPLATE_INPUT = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
SCORING = "exact match"


class Example(NamedTuple):
    """One instruction example.

    Parameters
    ----------
    family : str
        Its task family.
    prompt : str
        The full prompt, ending where the answer starts.
    answer : str
        The exact target text (no trailing newline).

    Examples
    --------
    >>> from llm_bridge.data import Example, alpaca
    >>> ex = Example("addition", alpaca("Add the two numbers.", "2 + 3"), "5")
    >>> ex.is_correct(" 5 "), ex.is_correct("6")
    (True, False)
    """

    family: str
    prompt: str     # the full prompt, ending where the answer starts
    answer: str     # the exact target text (no trailing newline)

    @property
    def target(self) -> str:
        """The training target, ``answer``."""
        return self.answer

    def is_correct(self, generated: str) -> bool:
        """Exact match of the first generated line.

        Parameters
        ----------
        generated : str
            A generated continuation.

        Returns
        -------
        bool
        """
        return generated.strip().split("\n")[0].strip() == self.answer


def alpaca(instruction: str, input_text: str = "") -> str:
    """The Alpaca-style prompt used for both training and evaluation.

    Parameters
    ----------
    instruction : str
    input_text : str, optional
        The input block (left out when empty).

    Returns
    -------
    str
        Ending with the response header, where the answer starts.
    """
    if input_text:
        return TEMPLATE_INPUT.format(instruction=instruction, input=input_text)
    return TEMPLATE.format(instruction=instruction)


# ---- synthetic families ---------------------------------------------------------------------
# Chosen because SmolLM2-135M scores ~0% zero-shot (it answers in sentences) yet learns them in
# ~100 steps, and no constant answer scores well on them.
_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen " \
        "sixteen seventeen eighteen nineteen".split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
WORDS = ("apple bread chair dance eagle field grape house island jacket kitten lemon market night ocean "
         "pencil queen river stone table uncle valley window yellow zebra garden planet silver forest candle "
         "bottle camera doctor engine flower guitar hammer jungle ladder mirror needle orange pillow rabbit "
         "saddle ticket violin wallet button castle dragon finger ginger helmet insect kettle lizard magnet "
         "napkin parrot rocket sunset tunnel velvet winter anchor basket cotton desert fabric harbor marble "
         "meadow pepper puzzle shadow spider throne turtle wizard cherry donkey falcon goblet hollow igloo").split()


def _number_words(n: int) -> str:
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens - 2] + ("" if ones == 0 else "-" + _ONES[ones])


def _addition(rng, words):
    a, b = (int(x) for x in rng.integers(10, 100, size=2))
    return "Add the two numbers.", f"{a} + {b}", str(a + b)


def _uppercase(rng, words):
    w = words[int(rng.integers(len(words)))]
    return "Write the word in capital letters.", w, w.upper()


def _sort3(rng, words):
    xs = [int(x) for x in rng.choice(np.arange(1, 100), size=3, replace=False)]
    return "Sort the numbers from smallest to largest.", ", ".join(map(str, xs)), ", ".join(map(str, sorted(xs)))


def _words_to_digits(rng, words):
    n = int(rng.integers(0, 100))
    return "Write the number in digits.", _number_words(n), str(n)


FAMILIES = {"addition": _addition, "uppercase": _uppercase, "sort3": _sort3, "words2digits": _words_to_digits}


def make_examples(family: str, count: int, rng, held_out: bool) -> list:
    """``count`` distinct examples of ``family``.

    Words for ``uppercase`` come from disjoint train/held-out halves of the word list, so
    evaluation measures the skill, not memory.

    Parameters
    ----------
    family : str
        One of ``FAMILIES``.
    count : int
        How many.
    rng : numpy.random.Generator
        The stream they are drawn from.
    held_out : bool
        Draw from the held-out half of the word list.

    Returns
    -------
    list of Example
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {family!r}")
    words = WORDS[1::2] if held_out else WORDS[0::2]
    out = []
    for _ in range(count):
        instruction, text, answer = FAMILIES[family](rng, words)
        out.append(Example(family, alpaca(instruction, text), answer))
    return out


def dirichlet_partition(n_clients: int, families, per_client: int, alpha: float, seed: int) -> list:
    """Client data sets: client i draws ``per_client`` examples with family proportions
    p_i ~ Dirichlet(alpha * 1) (small alpha: each client sees few families).

    Parameters
    ----------
    n_clients : int
        N.
    families : iterable of str
        The task families.
    per_client : int
        Examples per client.
    alpha : float
        The Dirichlet concentration (> 0).
    seed : int
        Client i's data come from the run's ``"problem"`` stream for client i.

    Returns
    -------
    list of list of Example
        One list per client.
    """
    n_clients = check_int("n_clients", n_clients, low=1)
    per_client = check_int("per_client", per_client, low=1)
    alpha = check_positive_float("dirichlet_alpha", alpha)
    families = list(families)
    clients = []
    for i in range(n_clients):
        rng = stream(seed, round=-1, client=i, purpose="problem")
        counts = rng.multinomial(per_client, rng.dirichlet(alpha * np.ones(len(families))))
        data = []
        for fam, c in zip(families, counts):
            data += make_examples(fam, int(c), rng, held_out=False)
        order = rng.permutation(len(data))
        clients.append([data[j] for j in order])
    return clients


def partition_pools(pools, n_clients: int, alpha: float, seed: int) -> list:
    """Split given example pools (one per family) over clients.

    Each pool's examples go to clients with proportions q ~ Dirichlet(alpha * 1), so small alpha
    is strongly non-IID.

    Parameters
    ----------
    pools : list of list of Example
        One pool per family.
    n_clients : int
        N.
    alpha : float
        The Dirichlet concentration (> 0).
    seed : int
        Pool f is split by the server's ``"problem"`` stream of layer f.

    Returns
    -------
    list of list of Example
        One list per client (possibly empty).
    """
    n_clients = check_int("n_clients", n_clients, low=1)
    alpha = check_positive_float("dirichlet_alpha", alpha)
    clients = [[] for _ in range(n_clients)]
    for f, pool in enumerate(pools):
        rng = stream(seed, round=-1, client=SERVER, layer=f, purpose="problem")
        owner = rng.choice(n_clients, size=len(pool), p=rng.dirichlet(alpha * np.ones(n_clients)))
        for ex, i in zip(pool, owner):
            clients[int(i)].append(ex)
    return clients


def held_out_set(families, per_family: int, seed: int) -> list:
    """``per_family`` evaluation examples of every family (the server's ``eval`` stream).

    Parameters
    ----------
    families : iterable of str
    per_family : int
    seed : int

    Returns
    -------
    list of Example
    """
    per_family = check_int("eval_per_family", per_family, low=1)
    rng = stream(seed, round=-1, client=SERVER, purpose="eval")
    return [ex for fam in families for ex in make_examples(fam, per_family, rng, held_out=True)]


def constant_answer_rate(examples) -> dict:
    """Per family, the exact-match rate of the best constant answer (a valid family keeps this low).

    Parameters
    ----------
    examples : list of Example

    Returns
    -------
    dict
        ``{family: rate}``.
    """
    out = {}
    for fam in sorted({e.family for e in examples}):
        answers = [e.answer for e in examples if e.family == fam]
        out[fam] = Counter(answers).most_common(1)[0][1] / len(answers)
    return out
