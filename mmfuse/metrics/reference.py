"""A plain, line-by-line Python 3 port of the official VQA ``evaluate()``: the cross-check and speed baseline.

Source: GT-Vision-Lab/VQA ``PythonEvaluationTools/vqaEvaluation/vqaEval.py`` at HEAD
``a013f0043c1e2cdc995922dfe257f7149aa9af06`` (Python 2.7). Nothing is cached or vectorised: every
question runs ``processPunctuation`` / ``processDigitArticle`` on the prediction and the 10 answer
dicts, then the ``otherGTAns`` / ``matchingAns`` loop, as the original does. Python 2 semantics are
kept where Python 3 would differ:

* the regexes were Python 2 byte-string patterns, so ``\\d`` is ASCII ``[0-9]`` (``re.ASCII`` here);
* ``periodStrip.sub("", outText, re.UNICODE)`` passes ``re.UNICODE`` (32) as ``count``;
* ``unicode.lower()`` maps one character to one character (no final sigma, U+0130 -> ``i``);
* ``sum()`` adds floats left to right (Python 3.12+ ``sum`` compensates, so it is not used);
* ``round()`` rounds exact halves away from zero (Python 3 rounds them to even).

Left out: the ``VQA`` dataset objects (annotations arrive as this package's dicts and are copied
into official-style answer dicts, as they would be loaded), ``evalQuesType`` / ``evalAnsType``
(copies of ``evalQA``) and the progress bar. Use :mod:`mmfuse.metrics.official_format` for real
scoring; this module is deliberately slow.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal

from mmfuse.metrics._vqa_tables import ARTICLES, CONTRACTIONS, NUMBER_WORDS, PUNCTUATION

__all__ = ["reference_evaluate", "reference_vqa_accuracy"]


def _py2_lower(text: str) -> str:
    """Python 2 ``unicode.lower()``: the simple (one-to-one) mapping of each character."""
    return "".join(c.lower() if len(c.lower()) == 1 else c.lower()[0] for c in text)


def _py2_sum(values: Sequence[float]) -> float:
    """Python 2 ``sum()`` of floats: plain left-to-right double additions, starting from 0."""
    total: float = 0
    for v in values:
        total = total + v
    return total


def _py2_round(x: float, n: int) -> float:
    """Python 2.7 ``round(x, n)``: the exact binary value rounded to n decimals, halves away from zero."""
    return float(Decimal(x).quantize(Decimal(1).scaleb(-n), rounding=ROUND_HALF_UP))


class _VQAEvalPort:
    """``VQAEval`` without the dataset objects: tables copied per instance (``setdefault`` grows them)."""

    def __init__(self, n: int = 2) -> None:
        self.n = n
        self.accuracy: dict = {}
        self.evalQA: dict = {}
        self.contractions = dict(CONTRACTIONS)
        self.manualMap = dict(NUMBER_WORDS)
        self.articles = sorted(ARTICLES)
        self.periodStrip = re.compile(r"(?!<=\d)(\.)(?!\d)", re.ASCII)
        self.commaStrip = re.compile(r"(\d)(\,)(\d)", re.ASCII)
        self.punct = list(PUNCTUATION)

    def evaluate(self, gts: dict, res: dict, quesIds: list) -> None:
        accQA = []
        accQuesType: dict = {}
        accAnsType: dict = {}
        for quesId in quesIds:
            for ansDic in gts[quesId]["answers"]:
                ansDic["answer"] = ansDic["answer"].replace("\n", " ")
                ansDic["answer"] = ansDic["answer"].replace("\t", " ")
                ansDic["answer"] = ansDic["answer"].strip()
            resAns = res[quesId]["answer"]
            resAns = resAns.replace("\n", " ")
            resAns = resAns.replace("\t", " ")
            resAns = resAns.strip()
            gtAcc = []
            gtAnswers = [ans["answer"] for ans in gts[quesId]["answers"]]

            if len(set(gtAnswers)) > 1:
                for ansDic in gts[quesId]["answers"]:
                    ansDic["answer"] = self.processPunctuation(ansDic["answer"])
                    ansDic["answer"] = self.processDigitArticle(ansDic["answer"])
                resAns = self.processPunctuation(resAns)
                resAns = self.processDigitArticle(resAns)

            for gtAnsDatum in gts[quesId]["answers"]:
                otherGTAns = [item for item in gts[quesId]["answers"] if item != gtAnsDatum]
                matchingAns = [item for item in otherGTAns if item["answer"] == resAns]
                acc = min(1, float(len(matchingAns)) / 3)
                gtAcc.append(acc)
            quesType = gts[quesId]["question_type"]
            ansType = gts[quesId]["answer_type"]
            avgGTAcc = float(_py2_sum(gtAcc)) / len(gtAcc)
            accQA.append(avgGTAcc)
            if quesType not in accQuesType:
                accQuesType[quesType] = []
            accQuesType[quesType].append(avgGTAcc)
            if ansType not in accAnsType:
                accAnsType[ansType] = []
            accAnsType[ansType].append(avgGTAcc)
            self.evalQA[quesId] = _py2_round(100 * avgGTAcc, self.n)
        self.accQA = accQA
        self.setAccuracy(accQA, accQuesType, accAnsType)

    def processPunctuation(self, inText: str) -> str:
        outText = inText
        for p in self.punct:
            if (p + " " in inText or " " + p in inText) or (re.search(self.commaStrip, inText) is not None):
                outText = outText.replace(p, "")
            else:
                outText = outText.replace(p, " ")
        outText = self.periodStrip.sub("", outText, int(re.UNICODE))  # sic: count == 32
        return outText

    def processDigitArticle(self, inText: str) -> str:
        outText = []
        tempText = _py2_lower(inText).split()
        for word in tempText:
            word = self.manualMap.setdefault(word, word)
            if word not in self.articles:
                outText.append(word)
        for wordId, word in enumerate(outText):
            if word in self.contractions:
                outText[wordId] = self.contractions[word]
        return " ".join(outText)

    def setAccuracy(self, accQA: list, accQuesType: dict, accAnsType: dict) -> None:
        n = self.n
        self.accuracy["overall"] = _py2_round(100 * float(_py2_sum(accQA)) / len(accQA), n)
        self.accuracy["perQuestionType"] = {
            t: _py2_round(100 * float(_py2_sum(v)) / len(v), n) for t, v in accQuesType.items()}
        self.accuracy["perAnswerType"] = {
            t: _py2_round(100 * float(_py2_sum(v)) / len(v), n) for t, v in accAnsType.items()}


def _gts_entry(answers: Sequence[str], question_type: str = "", answer_type: str = "") -> dict:
    """An annotation as the official files hold it: answer dicts that differ by ``answer_id``."""
    return {"answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)],
            "question_type": question_type, "answer_type": answer_type}


def reference_vqa_accuracy(prediction: str, gt_answers: Sequence[str]) -> float:
    """The official unrounded per-question accuracy (``avgGTAcc``) of a raw prediction.

    Official, not :func:`~mmfuse.metrics.vqa.vqa_accuracy`, for one GT answer (always 0.0) and
    none (``ZeroDivisionError``).
    """
    port = _VQAEvalPort()
    port.evaluate({0: _gts_entry(gt_answers)}, {0: {"answer": prediction}}, [0])
    return port.accQA[0]


def reference_evaluate(results: dict[int, str], annotations: dict[int, dict]) -> dict:
    """The official ``evaluate()`` over every annotated question, in annotation order.

    Args:
        results: question_id -> raw predicted answer (must cover every annotated id).
        annotations: question_id -> ``{"answers": [str, ...], "question_type", "answer_type", ...}``.

    Returns:
        ``{"overall", "perQuestionType", "perAnswerType"}`` (the official ``accuracy`` dict, two-decimal
        percentages) plus ``"evalQA"`` (question_id -> rounded per-question percentage).
    """
    gts = {q: _gts_entry(a["answers"], a["question_type"], a["answer_type"]) for q, a in annotations.items()}
    res = {q: {"answer": results[q]} for q in annotations}
    port = _VQAEvalPort()
    port.evaluate(gts, res, list(annotations))
    return {**port.accuracy, "evalQA": port.evalQA}
