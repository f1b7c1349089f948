use crate::output::Io;
use std::path::Path;

use accord_workspace::Workspace;
use anyhow::Result;

use super::shown;
use crate::output;

pub fn init(io: &mut Io<'_>, data: &Path, org: &str, json: bool) -> Result<()> {
    if org.trim().is_empty() {
        anyhow::bail!("the organisation name is empty: pass --org \"Your organisation\"");
    }
    let ws = Workspace::init(data, org)?;
    let me = ws.whoami();
    if json {
        return output::json(io, &me);
    }
    writeln!(
        io.out,
        "Created the replica for {} in {}",
        me.name,
        shown(data)
    )?;
    writeln!(io.out, "Fingerprint: {}", me.fingerprint)?;
    writeln!(io.out, "Public key:  {}", me.key)?;
    writeln!(io.out)?;
    writeln!(
        io.out,
        "Give your public key to partners so they can add you to a partnership."
    )?;
    writeln!(io.out, "Next: accord partnership new \"Partnership name\"")?;
    Ok(())
}

pub fn whoami(io: &mut Io<'_>, ws: &Workspace, json: bool) -> Result<()> {
    let me = ws.whoami();
    if json {
        return output::json(io, &me);
    }
    writeln!(io.out, "{}", me.name)?;
    writeln!(io.out, "Fingerprint: {}", me.fingerprint)?;
    writeln!(io.out, "Public key:  {}", me.key)?;
    Ok(())
}
