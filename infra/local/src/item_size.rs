//! What a DynamoDB write is billed, measured for the bench (#11): on-demand bills each written item
//! ceil(max(size before, size after) / 1 KB) write units, twice in a transaction. With the bench's
//! measuring on (`Edge::measure_writes`), the edge reads each item a function writes from moto just
//! before and just after the write and sizes it as DynamoDB does: attribute names' UTF-8 bytes plus
//! each value's (strings their bytes, numbers about half their digits plus one, binaries their
//! bytes, booleans and nulls 1, lists and maps 3 plus 1 per element plus the elements).

use serde_json::Value;

/// The size of one attribute value in DynamoDB JSON (`{"S": ...}`, `{"M": {...}}`, ...).
pub fn value_size(v: &Value) -> usize {
    let Some((kind, inner)) = v.as_object().and_then(|o| o.iter().next()) else { return 0 };
    match kind.as_str() {
        "S" => inner.as_str().map(str::len).unwrap_or(0),
        "N" => inner.as_str().map(|n| n.trim_start_matches('-').replace('.', "").trim_start_matches('0').len().div_ceil(2) + 1).unwrap_or(1),
        "B" => inner.as_str().map(|b| b.len() * 3 / 4).unwrap_or(0),
        "BOOL" | "NULL" => 1,
        "SS" => inner.as_array().map(|a| a.iter().filter_map(Value::as_str).map(str::len).sum()).unwrap_or(0),
        "NS" | "BS" => inner.as_array().map(|a| a.iter().filter_map(Value::as_str).map(|s| s.len().div_ceil(2) + 1).sum()).unwrap_or(0),
        "L" => 3 + inner.as_array().map(|a| a.iter().map(|e| 1 + value_size(e)).sum::<usize>()).unwrap_or(0),
        "M" => 3 + inner.as_object().map(|m| item_size(m) + m.len()).unwrap_or(0),
        _ => 0,
    }
}

/// The size of an item (its attributes in DynamoDB JSON).
pub fn item_size(item: &serde_json::Map<String, Value>) -> usize {
    item.iter().map(|(name, v)| name.len() + value_size(v)).sum()
}

/// Write units for one item written: ceil(max(before, after) / 1 KB), at least 1.
pub fn write_units(before: usize, after: usize) -> u32 {
    (before.max(after).div_ceil(1024)).max(1) as u32
}

/// The items a write request touches: (table, key) for UpdateItem/DeleteItem and each transaction
/// action, (table, whole item) for PutItem (its key is found with the table's key schema).
pub fn targets(operation: &str, body: &Value) -> Vec<(String, Value)> {
    let one = |op: &Value| -> Option<(String, Value)> {
        let table = op["TableName"].as_str()?.to_string();
        let which = if op["Key"].is_object() { op["Key"].clone() } else { op["Item"].clone() };
        which.is_object().then_some((table, which))
    };
    match operation {
        "PutItem" | "UpdateItem" | "DeleteItem" => one(body).into_iter().collect(),
        "TransactWriteItems" => body["TransactItems"]
            .as_array()
            .map(|a| a.iter().filter_map(|action| action.as_object().and_then(|o| o.values().next()).and_then(one)).collect())
            .unwrap_or_default(),
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_follow_dynamodbs_rules() {
        assert_eq!(value_size(&json!({"S": "hello"})), 5);
        assert_eq!(value_size(&json!({"N": "12345"})), 4, "5 digits: 3 + 1");
        assert_eq!(value_size(&json!({"BOOL": true})), 1);
        assert_eq!(value_size(&json!({"L": [{"S": "ab"}, {"N": "1"}]})), 3 + (1 + 2) + (1 + 2));
        let item = json!({"pk": {"S": "order"}, "m": {"M": {"a": {"S": "xy"}}}});
        assert_eq!(item_size(item.as_object().unwrap()), 2 + 5 + 1 + (3 + 1 + 2 + 1));
        assert_eq!(write_units(0, 1), 1);
        assert_eq!(write_units(1024, 1025), 2);
        assert_eq!(write_units(3000, 100), 3, "a write that shrinks the item bills its size before");
    }

    #[test]
    fn every_write_names_the_items_it_touches() {
        let t = targets(
            "TransactWriteItems",
            &json!({"TransactItems": [{"Update": {"TableName": "A", "Key": {"pk": {"S": "1"}}}}, {"Put": {"TableName": "B", "Item": {"pk": {"S": "2"}, "x": {"N": "1"}}}}]}),
        );
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].0.as_str(), t[1].0.as_str()), ("A", "B"));
        assert!(targets("GetItem", &json!({"TableName": "A", "Key": {}})).is_empty());
    }
}
