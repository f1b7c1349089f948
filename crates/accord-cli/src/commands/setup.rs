use std::path::Path;

use accord_workspace::Workspace;
use anyhow::Result;

use super::shown;
use crate::output;

pub fn init(data: &Path, org: &str, json: bool) -> Result<()> {
    if org.trim().is_empty() {
        anyhow::bail!("the organisation name is empty: pass --org \"Your organisation\"");
    }
    let ws = Workspace::init(data, org)?;
    let me = ws.whoami();
    if json {
        return output::json(&me);
    }
    println!("Created the replica for {} in {}", me.name, shown(data));
    println!("Fingerprint: {}", me.fingerprint);
    println!("Public key:  {}", me.key);
    println!();
    println!("Give your public key to partners so they can add you to a partnership.");
    println!("Next: accord partnership new \"Partnership name\"");
    Ok(())
}

pub fn whoami(ws: &Workspace, json: bool) -> Result<()> {
    let me = ws.whoami();
    if json {
        return output::json(&me);
    }
    println!("{}", me.name);
    println!("Fingerprint: {}", me.fingerprint);
    println!("Public key:  {}", me.key);
    Ok(())
}
