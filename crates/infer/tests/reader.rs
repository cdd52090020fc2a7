//! The default GGUF model reading passages: the passage a question was written from makes it likelier
//! than a passage on another subject, and the answer it reads comes from the sentence.

mod common;

use rightmodel_core::PassageReader;
use rightmodel_infer::llm::LmReader;

#[test]
fn the_source_passage_makes_its_question_likelier() {
    let s = LmReader::start(&common::gguf(), "gemma3-270m", 4, 2).expect("scorer starts");
    let passages = [
        "The Harbour Bridge was designed by John Bradfield and opened in March 1932. It carries rail, vehicle and \
         pedestrian traffic across the harbour.",
        "The Museum of Applied Arts was founded in 1852 after the Great Exhibition, with Henry Cole as its first \
         director.",
        "Photosynthesis converts light energy into chemical energy stored in glucose.",
    ];
    let ll = s.question_log_likelihood("Who designed the Harbour Bridge?", &passages).unwrap();
    assert_eq!(ll.len(), 3);
    assert!(ll.iter().all(|v| v.is_finite() && *v < 0.0), "{ll:?}");
    assert!(ll[0] > ll[1] + 1.0 && ll[0] > ll[2] + 1.0, "{ll:?}");
    let ll = s.question_log_likelihood("When was the museum founded?", &passages).unwrap();
    assert!(ll[1] > ll[0] + 1.0 && ll[1] > ll[2] + 1.0, "{ll:?}");

    // The same call gives the same scores: the passages' states now come from the cache, and no state
    // leaks from one call into the next.
    let again = s.question_log_likelihood("When was the museum founded?", &passages).unwrap();
    assert_eq!(ll, again);
    // A fresh scorer (nothing cached) agrees with the cached one.
    let fresh = LmReader::start(&common::gguf(), "gemma3-270m", 4, 2).expect("scorer starts");
    let cold = fresh.question_log_likelihood("When was the museum founded?", &passages).unwrap();
    assert!(cold.iter().zip(&ll).all(|(a, b)| (a - b).abs() < 1e-3), "{cold:?} vs {ll:?}");
    drop(fresh);
    // Warming decodes passages into the cache ahead of questions, with the same result.
    let warmed = LmReader::start(&common::gguf(), "gemma3-270m", 4, 2).expect("scorer starts");
    assert_eq!(warmed.cached_passages(), 0);
    warmed.warm(&passages);
    warmed.warm(&passages[..1]);
    assert_eq!(warmed.cached_passages(), 3);
    let hot = warmed.question_log_likelihood("When was the museum founded?", &passages).unwrap();
    assert!(hot.iter().zip(&ll).all(|(a, b)| (a - b).abs() < 1e-3), "{hot:?} vs {ll:?}");
    assert_eq!(warmed.cached_passages(), 3);
    drop(warmed);
    // A passage's score does not depend on the other passages of the call or their order.
    let swapped = s.question_log_likelihood("When was the museum founded?", &[passages[1], passages[0]]).unwrap();
    assert!((swapped[0] - ll[1]).abs() < 1e-3 && (swapped[1] - ll[0]).abs() < 1e-3, "{swapped:?} vs {ll:?}");

    assert!(s.question_log_likelihood("Who?", &[]).unwrap().is_empty());
    let too_many = s.question_log_likelihood("Who?", &["a"; 5]);
    assert_eq!(s.max_passages(), 4);
    assert!(too_many.is_err());
    // Very long inputs are cut, not an error.
    let long = "word ".repeat(5000);
    let ll = s.question_log_likelihood(&long, &[&long, "short"]).unwrap();
    assert!(ll.iter().all(|v| v.is_finite()), "{ll:?}");
    assert_eq!(s.model_id(), "gemma3-270m");

    // Reading: short answers taken from the sentence, one line each.
    let sentence = "The Harbour Bridge was designed by John Bradfield and opened in March 1932.";
    let who = s.read_answer(sentence, "Who designed the Harbour Bridge?").unwrap();
    assert!(who.text.contains("Bradfield") && !who.text.contains('\n') && who.text.len() < 40, "{who:?}");
    // Its likelihood covers the answer's tokens and the line break that closed it.
    assert!(who.tokens >= 2 && who.log_prob < 0.0 && who.log_prob.is_finite(), "{who:?}");
    let when = s.read_answer(sentence, "When did the Harbour Bridge open?").unwrap();
    assert!(when.text.contains("1932"), "{when:?}");
    // A sentence that does not hold the answer leaves the model less sure than the one that does.
    let elsewhere = "The museum next to the harbour keeps a collection of old maps and ship models.";
    let unsure = s.read_answer(elsewhere, "Who designed the Harbour Bridge?").unwrap();
    assert!(unsure.mean_log_prob() < who.mean_log_prob(), "{unsure:?} vs {who:?}");
    // The same question reads the same answer (the examples' state is cached, nothing leaks between
    // calls), reading does not disturb scoring, and long inputs are cut, not an error.
    assert_eq!(s.read_answer(sentence, "Who designed the Harbour Bridge?").unwrap(), who);
    let after = s.question_log_likelihood("When was the museum founded?", &passages).unwrap();
    assert!(after.iter().zip(&again).all(|(a, b)| (a - b).abs() < 1e-3), "{after:?} vs {again:?}");
    assert!(s.read_answer(&long, &long).is_ok());
}

#[test]
fn a_missing_model_file_is_a_load_error() {
    let r = LmReader::start(std::path::Path::new("/nonexistent/model.gguf"), "x", 2, 1);
    assert!(matches!(r, Err(rightmodel_infer::InferError::Load { .. })), "{:?}", r.err());
}
