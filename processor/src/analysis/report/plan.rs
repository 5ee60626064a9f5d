//! auto_explain plans, outlined for a suspect's evidence: the plan nodes in
//! order ("Aggregate > Seq Scan on invoices"), so that a plan that changed
//! between the baseline and the window reads at a glance.

use serde_json::Value;

/// At most this many nodes are named; a longer plan ends in "…".
const MAX_NODES: usize = 8;

/// The outline of a plan as pg-watch stores it: auto_explain's JSON
/// format (an object with `Plan`), or its text format (a JSON string).
pub fn outline(plan: &Value) -> Option<String> {
    let mut nodes = Vec::new();
    match plan {
        Value::Object(o) => json_nodes(o.get("Plan").unwrap_or(plan), &mut nodes),
        Value::String(text) => text_nodes(text, &mut nodes),
        _ => {}
    }
    if nodes.is_empty() {
        return None;
    }
    let more = nodes.len() > MAX_NODES;
    nodes.truncate(MAX_NODES);
    let mut text = nodes.join(" > ");
    if more {
        text.push_str(" > …");
    }
    Some(text)
}

/// Depth first, parents before children, as EXPLAIN prints them.
fn json_nodes(node: &Value, out: &mut Vec<String>) {
    let Some(kind) = node.get("Node Type").and_then(Value::as_str) else {
        return;
    };
    let mut name = kind.to_owned();
    if let Some(index) = node.get("Index Name").and_then(Value::as_str) {
        name.push_str(&format!(" using {index}"));
    }
    if let Some(rel) = node.get("Relation Name").and_then(Value::as_str) {
        name.push_str(&format!(" on {rel}"));
    }
    out.push(name);
    for child in node
        .get("Plans")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        json_nodes(child, out);
    }
}

/// Text plans: one node per line that carries a cost or an actual time
/// (`Seq Scan on invoices  (cost=…)`, `->  Index Scan using … (…)`).
fn text_nodes(text: &str, out: &mut Vec<String>) {
    for line in text.lines() {
        let line = line.trim_start().trim_start_matches("->").trim_start();
        let Some((node, _)) = line.split_once("  (") else {
            continue;
        };
        if !node.is_empty() && !node.contains(':') {
            out.push(node.trim().to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_text_plan_is_its_nodes_in_order() {
        let plan = json!(
            "Aggregate  (cost=21370.00..21370.01 rows=1 width=40)\n  ->  Seq Scan on invoices  (cost=0.00..21345.00 rows=100 width=6)\n        Filter: (customer_id = 42)"
        );
        assert_eq!(
            outline(&plan).as_deref(),
            Some("Aggregate > Seq Scan on invoices")
        );
    }

    #[test]
    fn a_json_plan_names_its_indexes_and_relations() {
        let plan = json!({"Query Text": "SELECT …", "Plan": {
            "Node Type": "Aggregate",
            "Plans": [{"Node Type": "Bitmap Heap Scan", "Relation Name": "invoices",
                "Plans": [{"Node Type": "Bitmap Index Scan", "Index Name": "invoices_customer_id_idx"}]}]
        }});
        assert_eq!(
            outline(&plan).as_deref(),
            Some(
                "Aggregate > Bitmap Heap Scan on invoices > Bitmap Index Scan using invoices_customer_id_idx"
            )
        );
    }

    #[test]
    fn nothing_recognisable_is_no_outline() {
        assert_eq!(outline(&json!("Query Text: SELECT 1")), None);
        assert_eq!(outline(&json!(42)), None);
    }
}
