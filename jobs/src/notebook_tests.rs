use super::*;
use crate::Kind;
use proptest::prelude::*;
use serde_json::json;

fn code(source: Value, tags: &[&str]) -> Value {
    json!({"cell_type": "code", "execution_count": null, "metadata": {"tags": tags},
           "outputs": [], "source": source})
}

fn markdown(text: &str) -> Value {
    json!({"cell_type": "markdown", "metadata": {}, "source": text})
}

fn doc(kernel: Option<&str>, cells: Vec<Value>) -> Value {
    let mut d = json!({"nbformat": 4, "nbformat_minor": 4, "metadata": {}, "cells": cells});
    if let Some(k) = kernel {
        d["metadata"]["kernelspec"] = json!({"name": k, "display_name": k});
    }
    d
}

fn sample() -> Value {
    doc(
        None,
        vec![
            markdown("# Failed logins"),
            code(
                json!(["day = '2026-01-01'\n", "min_fails = 5\n"]),
                &["parameters"],
            ),
            code(json!(""), &[]),
            code(
                json!("SELECT user, count(*) FROM logins\nWHERE day = $day GROUP BY user"),
                &[],
            ),
        ],
    )
}

#[test]
fn parses_code_cells_with_document_indices() {
    let nb = Notebook::parse(&sample()).unwrap();
    assert_eq!(nb.kernel, "tarn-sql");
    assert_eq!(nb.cells.len(), 2);
    assert_eq!(nb.cells[0].index, 1);
    assert!(nb.cells[0].is_parameters);
    assert_eq!(nb.cells[0].source, "day = '2026-01-01'\nmin_fails = 5\n");
    assert_eq!(nb.cells[0].tags, vec!["parameters"]);
    assert_eq!(nb.cells[1].index, 3);
    assert!(!nb.cells[1].is_parameters);
    assert_eq!(nb.doc, sample());
}

#[test]
fn reads_the_kernel_and_refuses_unsupported_ones() {
    let python = doc(Some("python3"), vec![code(json!("x = 1"), &[])]);
    assert_eq!(Notebook::parse(&python).unwrap().kernel, "python3");
    let kql = doc(
        Some("tarn-kql"),
        vec![code(json!("SigninLogs | take 1"), &[])],
    );
    assert_eq!(Notebook::parse(&kql).unwrap().kernel, "tarn-kql");
    let err = Notebook::parse(&doc(Some("ir"), vec![code(json!("1"), &[])])).unwrap_err();
    assert_eq!(
        err,
        Error::Kernel {
            kernel: "ir".into()
        }
    );
    assert_eq!(err.kind(), Kind::InvalidNotebook);
    assert!(
        err.to_string()
            .contains("\"tarn-sql\", \"tarn-kql\" or \"tarn-python\""),
        "{err}"
    );
}

#[test]
fn refuses_other_nbformats_and_shapes() {
    let mut old = sample();
    old["nbformat"] = json!(3);
    let err = Notebook::parse(&old).unwrap_err();
    assert_eq!(err, Error::NotNbformat4 { found: "3".into() });
    assert!(err.to_string().contains("nbconvert"), "{err}");

    let err = Notebook::parse(&json!({"cells": []})).unwrap_err();
    assert_eq!(
        err,
        Error::NotNbformat4 {
            found: "missing".into()
        }
    );

    for bad in [
        json!([1]),
        json!({"nbformat": 4}),
        json!({"nbformat": 4, "cells": [1]}),
        json!({"nbformat": 4, "cells": [{"source": "x"}]}),
        json!({"nbformat": 4, "cells": [{"cell_type": "code", "source": [1]}]}),
    ] {
        let err = Notebook::parse(&bad).unwrap_err();
        assert!(matches!(err, Error::NotebookShape { .. }), "{bad}: {err}");
    }
}

#[test]
fn refuses_a_notebook_with_nothing_to_run() {
    let nb = doc(None, vec![markdown("hi"), code(json!(["  \n"]), &[])]);
    assert_eq!(Notebook::parse(&nb).unwrap_err(), Error::NoCodeCell);
}

#[test]
fn refuses_cells_that_wait_for_a_person() {
    let cases = [
        ("name = input('who? ')", "input()"),
        ("x = raw_input ()", "raw_input()"),
        ("import getpass", "getpass"),
        ("from ipywidgets import interact", "ipywidgets"),
        ("w = widgets.IntSlider()", "ipywidgets"),
        ("%debug", "%debug"),
        ("%%pdb", "%pdb"),
        ("!sudo apt-get install -y jq", "!sudo"),
        ("  !read answer", "!read"),
    ];
    for (line, what) in cases {
        let nb = doc(
            Some("python3"),
            vec![
                markdown("x"),
                code(json!(format!("a = 1\n# input()\n{line}\n")), &[]),
            ],
        );
        let err = Notebook::parse(&nb).unwrap_err();
        match &err {
            Error::Interactive {
                cell: 1, line: 3, ..
            } => {}
            other => panic!("{line}: {other:?}"),
        }
        assert!(err.to_string().contains(what), "{line}: {err}");
        assert_eq!(err.kind(), Kind::InvalidNotebook);
    }
}

#[test]
fn lookalikes_are_not_interactive() {
    for source in [
        "self.input(x)",
        "user_input = 3",
        "inputs(1)",
        "!ls -la",
        "%timeit f()",
        "print('widgets')",
    ] {
        let nb = doc(Some("python3"), vec![code(json!(source), &[])]);
        Notebook::parse(&nb).unwrap_or_else(|e| panic!("{source}: {e}"));
    }
    // SQL strings and comments are not searched.
    let sql = doc(
        None,
        vec![code(
            json!("SELECT 'input(' AS a -- getpass\n/* widgets.x */ FROM t"),
            &[],
        )],
    );
    Notebook::parse(&sql).unwrap();
}

#[test]
fn defaults_read_the_parameters_cell() {
    let source = "# defaults\n\
                  -- also a comment\n\
                  \n\
                  day = '2026-01-01'\n\
                  quoted = \"a \\\"b\\\" \\\\ \\n\"\n\
                  min_fails = -5  # at least\n\
                  ratio = 0.25\n\
                  big = 1e3\n\
                  on = True\n\
                  off = false\n\
                  nothing = None\n\
                  nil = null -- sql style\n\
                  typed: int = 7\n";
    let nb = Notebook::parse(&doc(
        None,
        vec![
            code(json!(source), &["parameters"]),
            code(json!("SELECT 1"), &[]),
        ],
    ))
    .unwrap();
    let d = nb.defaults().unwrap();
    assert_eq!(d["day"], ParamValue::Text("2026-01-01".into()));
    assert_eq!(d["quoted"], ParamValue::Text("a \"b\" \\ \n".into()));
    assert_eq!(d["min_fails"], ParamValue::Int(-5));
    assert_eq!(d["ratio"], ParamValue::Float(0.25));
    assert_eq!(d["big"], ParamValue::Float(1000.0));
    assert_eq!(d["on"], ParamValue::Bool(true));
    assert_eq!(d["off"], ParamValue::Bool(false));
    assert_eq!(d["nothing"], ParamValue::Null);
    assert_eq!(d["nil"], ParamValue::Null);
    assert_eq!(d["typed"], ParamValue::Int(7));
    assert_eq!(d.len(), 10);
}

#[test]
fn defaults_are_empty_without_a_parameters_cell() {
    let nb = Notebook::parse(&doc(None, vec![code(json!("SELECT 1"), &[])])).unwrap();
    assert!(nb.defaults().unwrap().is_empty());
}

#[test]
fn defaults_refuse_anything_but_literal_assignments() {
    for (line, bad) in [
        (2, "x = compute()"),
        (2, "x = 'open"),
        (2, "1x = 1"),
        (2, "x == 1"),
        (2, "x = 1 2"),
        (2, "x = [1, 2]"),
        (2, "x = 'a\\q'"),
        (2, "print(x)"),
        (2, "x = inf"),
        (2, "x = 99999999999999999999"),
    ] {
        let nb = Notebook::parse(&doc(
            Some("python3"),
            vec![code(json!(format!("a = 1\n{bad}")), &["parameters"])],
        ))
        .unwrap();
        let err = nb.defaults().unwrap_err();
        assert_eq!(
            err,
            Error::ParametersLine {
                cell: 0,
                line,
                text: bad.into()
            },
            "{bad}"
        );
        assert_eq!(err.kind(), Kind::InvalidNotebook);
    }
    let nb = Notebook::parse(&doc(
        None,
        vec![code(json!("a = 1\na = 2"), &["parameters"])],
    ))
    .unwrap();
    assert!(matches!(
        nb.defaults().unwrap_err(),
        Error::DuplicateParameter { line: 2, .. }
    ));
}

#[test]
fn with_outputs_fills_the_executed_cells() {
    let nb = Notebook::parse(&sample()).unwrap();
    let out = json!({"output_type": "stream", "name": "stdout", "text": ["ok\n"]});
    let executed = nb.with_outputs(&[
        (3, vec![out.clone()], Some(2)),
        (1, vec![], None),
        (99, vec![], Some(1)),
    ]);
    assert_eq!(executed["cells"][3]["outputs"], json!([out]));
    assert_eq!(executed["cells"][3]["execution_count"], json!(2));
    assert_eq!(executed["cells"][1]["execution_count"], Value::Null);
    assert_eq!(executed["cells"][0], sample()["cells"][0]);
    assert_eq!(executed["cells"].as_array().unwrap().len(), 4);
}

#[test]
fn injected_cell_follows_papermill() {
    let values = BTreeMap::from([
        ("day".to_owned(), ParamValue::Text("2026-02-01".into())),
        ("n".to_owned(), ParamValue::Int(3)),
    ]);
    let cell = injected_parameters_cell(&values);
    assert_eq!(cell["cell_type"], "code");
    assert_eq!(cell["metadata"]["tags"], json!(["injected-parameters"]));
    assert_eq!(
        cell["source"],
        json!(["# Parameters\n", "day = '2026-02-01'\n", "n = 3"])
    );
}

#[test]
fn with_injected_inserts_after_the_parameters_cell() {
    let nb = Notebook::parse(&sample()).unwrap();
    let values = BTreeMap::from([("min_fails".to_owned(), ParamValue::Int(9))]);
    let run = nb.with_injected(&values);
    let indices: Vec<_> = run.cells.iter().map(|c| c.index).collect();
    assert_eq!(indices, vec![1, 2, 4]);
    assert_eq!(run.cells[1].tags, vec!["injected-parameters"]);
    assert_eq!(run.cells[1].source, "# Parameters\nmin_fails = 9");
    assert_eq!(
        run.doc["cells"][2]["metadata"]["tags"],
        json!(["injected-parameters"])
    );
    assert_eq!(run.doc["cells"].as_array().unwrap().len(), 5);
    assert_eq!(run.doc["cells"][4], sample()["cells"][3]);
    // The run's document parses to the same cells.
    assert_eq!(Notebook::parse(&run.doc).unwrap().cells, run.cells);

    // Injecting again replaces the earlier cell instead of adding another.
    let again = run.with_injected(&BTreeMap::new());
    assert_eq!(again.doc["cells"].as_array().unwrap().len(), 5);
    assert_eq!(again.cells[1].source, "# Parameters");
    assert_eq!(Notebook::parse(&again.doc).unwrap().cells, again.cells);

    // Outputs land on the injected document's indices.
    let executed = run.with_outputs(&[(4, vec![json!({"output_type": "stream"})], Some(1))]);
    assert_eq!(executed["cells"][4]["execution_count"], json!(1));
}

#[test]
fn with_injected_goes_first_without_a_parameters_cell() {
    let mut d = doc(None, vec![markdown("m"), code(json!("SELECT 1"), &[])]);
    d["nbformat_minor"] = json!(5);
    let nb = Notebook::parse(&d).unwrap();
    let run = nb.with_injected(&BTreeMap::from([("a".to_owned(), ParamValue::Null)]));
    assert_eq!(run.doc["cells"][0]["id"], "injected-parameters");
    let indices: Vec<_> = run.cells.iter().map(|c| c.index).collect();
    assert_eq!(indices, vec![0, 2]);
    assert_eq!(Notebook::parse(&run.doc).unwrap().cells, run.cells);
}

fn param_value() -> impl Strategy<Value = ParamValue> {
    prop_oneof![
        Just(ParamValue::Null),
        any::<bool>().prop_map(ParamValue::Bool),
        any::<i64>().prop_map(ParamValue::Int),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(ParamValue::Float),
        any::<String>().prop_map(ParamValue::Text),
    ]
}

proptest! {
    #[test]
    fn any_cell_text_parses_or_is_refused(source in any::<String>(), python in any::<bool>()) {
        let kernel = if python { "python3" } else { "tarn-sql" };
        let d = doc(Some(kernel), vec![code(json!(source), &["parameters"]), code(json!("1"), &[])]);
        if let Ok(nb) = Notebook::parse(&d) {
            let _ = nb.defaults();
        }
    }

    #[test]
    fn injected_values_read_back_as_defaults(
        values in prop::collection::btree_map("[a-z_][a-z0-9_]{0,6}", param_value(), 0..6),
    ) {
        let mut d = doc(None, vec![code(json!("SELECT 1"), &[])]);
        d["cells"] = json!([injected_parameters_cell(&values), d["cells"][0]]);
        // Read the injected cell as a parameters cell.
        d["cells"][0]["metadata"]["tags"] = json!(["parameters"]);
        let nb = Notebook::parse(&d).unwrap();
        prop_assert_eq!(nb.defaults().unwrap(), values);
    }
}
