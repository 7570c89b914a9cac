//! The namespace and the write parser on a hand-made structure: paths, types by style,
//! refusals, and the path events of a structure change.

use std::sync::Arc;

use rosc::OscType;

use super::namespace::{Index, Leaf};
use super::snapshot::{OpTree, ParInfo, Snap, Tree};
use super::writes::{parse_writes, write};
use super::ws::{parse_command, WsCommand};
use crate::cook::par::ParDef;
use crate::cook::ParValue;
use crate::daemon::request::{Auth, Request};

fn tree(chans: &[&str], driven: bool) -> Arc<Tree> {
    let par = |def: ParDef| ParInfo {
        def,
        driven_by: None,
    };
    let mut gain = par(ParDef::float("Gain", "p", 1.0)
        .range(0.0, 2.0)
        .clamp_min(0.0));
    if driven {
        gain.driven_by = Some("drv".into());
    }
    let pars = vec![
        gain,
        par(ParDef::int("Steps", "p", 2)),
        par(ParDef::toggle("On", "p", true)),
        par(ParDef::menu("Mode", "p", &["slow", "fast"], "slow")),
        par(ParDef::pulse("Go", "p")),
        par(ParDef::string("Label", "p", "hi")),
    ];
    Arc::new(Tree {
        ops: vec![OpTree {
            name: "s".into(),
            kind: "script",
            chans: chans.iter().map(|c| c.to_string()).collect(),
            pars,
        }],
        chan_at: vec![0],
        par_at: vec![0],
    })
}

#[test]
fn operators_channels_and_parameters_sit_at_their_paths_with_types_by_style() {
    let t = tree(&["x", "a/b"], false);
    let ix = Index::build(t.clone());
    let snap = Snap {
        tree: t,
        chans: vec![0.5, f32::NAN],
        pars: vec![
            ParValue::Float(1.5),
            ParValue::Float(3.0),
            ParValue::Float(1.0),
            ParValue::Str("fast".into()),
            ParValue::Float(0.0),
            ParValue::Str("hi".into()),
        ],
        stats: vec![Default::default()],
        ..Snap::default()
    };
    assert_eq!(ix.leaves["/project1/s/chan/x"], Leaf::Chan(0));
    assert_eq!(ix.leaves["/project1/s/chan/a/b"], Leaf::Chan(1));
    let j = |p: &str| ix.json(p, &snap).unwrap();
    assert_eq!(j("/project1/s/chan/x")["VALUE"][0], 0.5);
    assert!(
        j("/project1/s/chan/a/b").get("VALUE").is_none(),
        "NaN is never shown"
    );
    let gain = j("/project1/s/par/Gain");
    assert_eq!(
        (gain["TYPE"].as_str(), gain["ACCESS"].as_u64()),
        (Some("f"), Some(3))
    );
    assert_eq!(gain["RANGE"][0]["MIN"], 0.0);
    assert_eq!(gain["RANGE"][0]["MAX"], 2.0);
    assert_eq!(gain["CLIPMODE"][0], "low");
    assert_eq!(j("/project1/s/par/Steps")["VALUE"][0], 3);
    assert_eq!(j("/project1/s/par/On")["VALUE"][0], true);
    assert_eq!(j("/project1/s/par/Mode")["RANGE"][0]["VALS"][1], "fast");
    assert_eq!(j("/project1/s/par/Go")["TYPE"], "I");
    assert_eq!(j("/project1/s/par/Label")["VALUE"][0], "hi");
    assert_eq!(j("/project1/s")["DESCRIPTION"], "script CHOP");
    assert!(ix.json("/project1/none", &snap).is_none());
    assert_eq!(ix.leaves_under("/project1/s/chan").len(), 2);
}

#[test]
fn writes_become_control_requests_or_say_why_not() {
    let ix = Index::build(tree(&["x"], false));
    let w = |p: &str, a: Vec<OscType>| write(&ix, p, &a);
    assert_eq!(
        w("/project1/s/par/Gain", vec![OscType::Int(2)]),
        Ok(Request::Set(
            "s".into(),
            "Gain".into(),
            ParValue::Float(2.0)
        ))
    );
    assert_eq!(
        w("/project1/s/par/On", vec![OscType::Bool(false)]),
        Ok(Request::Set("s".into(), "On".into(), ParValue::Float(0.0)))
    );
    assert_eq!(
        w("/project1/s/par/Go", vec![]),
        Ok(Request::Pulse("s".into(), "Go".into()))
    );
    assert_eq!(
        w("/project1/s/par/Go", vec![OscType::Int(0)]),
        Ok(Request::Release)
    );
    assert_eq!(w("/chopd/reload", vec![]), Ok(Request::Reload));
    let e = |p: &str, a: Vec<OscType>| w(p, a).unwrap_err();
    assert!(e("/project1/s/par/Gain", vec![OscType::String("x".into())]).contains("needs a number"));
    assert!(e("/project1/s/par/Gain", vec![OscType::Double(f64::INFINITY)]).contains("finite"));
    assert!(e("/project1/s/par/Gain", vec![]).contains("exactly one"));
    assert!(e("/project1/s/par/Mode", vec![OscType::String("warp".into())]).contains("no entry"));
    assert!(e("/project1/s/chan/x", vec![OscType::Float(1.0)]).contains("read-only"));
    assert!(e("/project1/s/par", vec![OscType::Float(1.0)]).contains("container"));
    assert!(e("/nope", vec![]).contains("no such path"));
    // A long value is not echoed whole (found by the fuzz target).
    let long = "x".repeat(10_000);
    assert!(e("/project1/s/par/Gain", vec![OscType::String(long)]).len() < 200);
}

#[test]
fn the_token_prefix_is_judged_and_stripped() {
    let ix = Index::build(tree(&[], false));
    let m = |addr: &str| {
        rosc::encoder::encode(&rosc::OscPacket::Message(rosc::OscMessage {
            addr: addr.into(),
            args: vec![OscType::Float(1.0)],
        }))
        .unwrap()
    };
    let t = Some("0123456789abcdef");
    let (w, _) = parse_writes(
        &ix,
        &m("/chopd/auth/0123456789abcdef/project1/s/par/Gain"),
        t,
    )
    .unwrap();
    assert_eq!(
        (w[0].0.as_str(), w[0].1),
        ("/project1/s/par/Gain", Auth::Good)
    );
    assert!(w[0].2.is_ok());
    let (w, _) = parse_writes(&ix, &m("/chopd/auth/guess/project1/s/par/Gain"), t).unwrap();
    assert_eq!(w[0].1, Auth::Bad);
    let (w, _) = parse_writes(&ix, &m("/project1/s/par/Gain"), t).unwrap();
    assert_eq!(w[0].1, Auth::None);
    assert!(parse_writes(&ix, &[1, 2, 3], t).is_err());
    // A misspelt prefix never has the token echoed back (found by the fuzz target).
    let (w, _) = parse_writes(
        &ix,
        &m("/c.opd/auth/0123456789abcdef/project1/s/par/Gain"),
        t,
    )
    .unwrap();
    assert_eq!(w[0].0, "/c.opd/auth/TOKEN/project1/s/par/Gain");
    assert!(w[0].2.is_err());
}

#[test]
fn a_structure_change_is_added_removed_and_changed_paths() {
    let old = Index::build(tree(&["x"], false));
    let new = Index::build(tree(&["y", "z"], true));
    let (added, removed, changed) = old.diff(&new);
    assert_eq!(added, ["/project1/s/chan/y", "/project1/s/chan/z"]);
    assert_eq!(removed, ["/project1/s/chan/x"]);
    assert_eq!(changed, ["/project1/s/par/Gain"]);
    let none = Index::build(tree(&[], false));
    let (_, removed, _) = old.diff(&none);
    assert_eq!(
        removed,
        ["/project1/s/chan"],
        "only the outermost path of a removed subtree"
    );
}

#[test]
fn listen_and_ignore_commands() {
    assert_eq!(
        parse_command(r#"{"COMMAND":"LISTEN","DATA":"/project1/s/"}"#),
        Ok(WsCommand::Listen("/project1/s".into()))
    );
    assert_eq!(
        parse_command(r#"{"COMMAND":"IGNORE","DATA":"/a"}"#),
        Ok(WsCommand::Ignore("/a".into()))
    );
    assert!(parse_command("{").is_err());
    assert!(parse_command(r#"{"COMMAND":"LISTEN","DATA":"a"}"#).is_err());
    assert!(parse_command(r#"{"COMMAND":"RENAME","DATA":"/a"}"#).is_err());
}
