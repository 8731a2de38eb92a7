"""Video-QA adapters on small files written here: MSRVTT-QA / MSVD-QA JSON and TGIF-QA TSV."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmfuse.data.sources import DataError, load_records

TGIF_FRAMEQA = ("gif_name\tquestion\tanswer\ttype\tvid_id\tkey\tdescription\n"
                "tumblr_a\twhat is the color of the shirt ?\tblack\t2\tFRAMEQA1\t10\ta man in a black shirt .\n"
                "tumblr_b\thow many dogs are playing ?\ttwo\t1\tFRAMEQA2\t11\ttwo dogs are playing .\n")
TGIF_COUNT = ("gif_name\tquestion\tanswer\tvid_id\tkey\n"
              "tumblr_a\tHow many times does the man nod ?\t3\tCOUNT1\t10\n")
TGIF_ACTION = ("gif_name\tquestion\ta1\ta2\ta3\ta4\ta5\tanswer\tvid_id\tkey\n"
               "tumblr_a\tWhat does the woman do 4 times ?\tflick\tdo gymnastic\tchew food\tshake hips\tpat back\t2"
               "\tACTION1\t5\n"
               "tumblr_b\tWhat does the man do after sitting ?\tstand\twave\tjump\tsing\tclap\t4\tTRANS7\t6\n")


def test_msrvtt_qa_video_ids_and_lavis_style_entries(tmp_path: Path) -> None:
    entries = [{"answer": "man", "id": 0, "question": "who is singing?", "video_id": 7010},
               {"answer": ["dog", "puppy"], "question_id": "q1", "question": "What runs?", "video": "other/clip.mp4"}]
    (tmp_path / "train_qa.json").write_text(json.dumps(entries))
    recs = load_records("msrvtt_qa", "train", {"annotations": "train_qa.json", "videos": "videos"}, str(tmp_path))
    assert [r.question_id for r in recs] == [0, "q1"] and all(r.is_video for r in recs)
    assert recs[0].image == str((tmp_path / "videos" / "video7010.mp4").resolve())
    assert recs[1].image == str((tmp_path / "videos" / "other" / "clip.mp4").resolve())
    assert recs[0].answers == ("man",) and recs[1].answers == ("dog", "puppy")
    assert [r.question_type for r in recs] == ["who", "what"]
    # a plain path: videos under the data root, the default template
    recs = load_records("msrvtt_qa", "train", "train_qa.json", str(tmp_path))
    assert recs[0].image.endswith("/video7010.mp4")


def test_msvd_qa_maps_video_ids_through_the_youtube_mapping(tmp_path: Path) -> None:
    (tmp_path / "test_qa.json").write_text(json.dumps([{"answer": "cat", "id": 5, "question": "what plays?",
                                                        "video_id": 2}]))
    (tmp_path / "youtube_mapping.txt").write_text("-4wsuPCjDBc_5_15 vid1\nabcDEF_10_20 vid2\n")
    recs = load_records("msvd_qa", "test", {"annotations": "test_qa.json", "mapping": "youtube_mapping.txt",
                                            "videos": "YouTubeClips"}, str(tmp_path))
    assert recs[0].image.endswith("YouTubeClips/abcDEF_10_20.avi")
    (tmp_path / "bad.json").write_text(json.dumps([{"answer": "cat", "id": 5, "question": "q?", "video_id": 9}]))
    with pytest.raises(DataError, match=r"bad.json entry 0: video_id 9 is not in the mapping file"):
        load_records("msvd_qa", "test", {"annotations": "bad.json", "mapping": "youtube_mapping.txt"}, str(tmp_path))


@pytest.mark.parametrize("entries,match", [
    ({"not": "a list"}, "expected a JSON list"),
    ([{"answer": "x", "question": "q?", "video_id": 1}], r"entry 0: needs an 'id' or 'question_id'"),
    ([{"answer": "x", "id": 1, "question": "q?"}], r"entry 0: needs 'video_id' or 'video'"),
    ([{"answer": 3, "id": 1, "question": "q?", "video_id": 1}], r"entry 0: 'answer' must be a string"),
    ([{"answer": "x", "id": 1, "question": "q?", "video_id": 1}, {"answer": "y", "id": 1, "question": "q?",
                                                                  "video_id": 2}], r"entry 1: duplicate question id 1"),
])
def test_msrvtt_qa_errors_name_the_file_and_entry(tmp_path: Path, entries, match: str) -> None:
    (tmp_path / "qa.json").write_text(json.dumps(entries))
    with pytest.raises(DataError, match=match):
        load_records("msrvtt_qa", "train", "qa.json", str(tmp_path))
    with pytest.raises(DataError, match="valid keys: annotations, videos, template, mapping"):
        load_records("msrvtt_qa", "train", {"annotation": "qa.json"}, str(tmp_path))


def test_tgif_qa_frameqa_count_and_multiple_choice(tmp_path: Path) -> None:
    (tmp_path / "Train_frameqa_question.csv").write_text(TGIF_FRAMEQA)
    (tmp_path / "Train_count_question.csv").write_text(TGIF_COUNT)
    (tmp_path / "Train_action_question.csv").write_text(TGIF_ACTION)
    spec = {"questions": "Train_frameqa_question.csv", "videos": "gifs"}
    frame = load_records("tgif_qa", "train", spec, str(tmp_path))
    assert [(r.question_id, r.answers, r.answer_type, r.question_type) for r in frame] == [
        ("FRAMEQA1", ("black",), "color", "frameqa"), ("FRAMEQA2", ("two",), "number", "frameqa")]
    assert frame[0].image == str((tmp_path / "gifs" / "tumblr_a.gif").resolve()) and frame[0].image_id == "tumblr_a"
    count = load_records("tgif_qa", "train", "Train_count_question.csv", str(tmp_path))
    assert [(r.answers, r.question_type, r.answer_type) for r in count] == [(("3",), "count", "number")]
    mc = load_records("tgif_qa", "train", {"questions": "Train_action_question.csv",
                                           "template": "{gif_name}.mp4"}, str(tmp_path))
    assert [(r.answers, r.question_type) for r in mc] == [(("chew food",), "action"), (("clap",), "transition")]
    assert mc[0].image.endswith("/tumblr_a.mp4")


@pytest.mark.parametrize("text,match", [
    ("gif_name\tquestion\tanswer\n", r"line 1: header .* lacks vid_id"),
    (TGIF_ACTION.replace("\t2\tACTION1", "\t7\tACTION1"), r"line 2: 'answer' must be the index 0-4"),
    (TGIF_COUNT + "tumblr_b\tHow many ?\t2\tCOUNT1\t11\n", r"line 3: duplicate vid_id 'COUNT1' \(first on line 2\)"),
    (TGIF_COUNT + "tumblr_b\tHow many ?\t2\n", r"line 3: expected 5 tab-separated fields"),
])
def test_tgif_qa_errors_name_the_line(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "q.csv").write_text(text)
    with pytest.raises(DataError, match=match):
        load_records("tgif_qa", "train", "q.csv", str(tmp_path))
