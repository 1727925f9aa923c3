//! Kernel modules for the initramfs: finds modules by name in an unpacked Debian kernel package,
//! reads each module's `depends=` from its ELF `.modinfo` section (the package ships no
//! modules.dep: depmod runs at install time), and orders the dependency closure so that every
//! module comes after the modules it needs (the order `insmod` must load them in).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What went wrong finding or reading kernel modules.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// Walking the modules tree failed.
    #[error("reading modules directory {path}")]
    Walk {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Reading a module file failed.
    #[error("reading module {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The module is not a well-formed 64-bit little-endian ELF file.
    #[error("module {path}: not a 64-bit little-endian ELF file ({detail} at byte {offset})")]
    Elf {
        path: PathBuf,
        detail: &'static str,
        offset: usize,
    },
    /// A module (or a dependency) is neither in the tree nor built in.
    #[error("kernel module {name} (needed by {needed_by}) is neither a module nor built in")]
    Missing { name: String, needed_by: String },
}

/// Module names use `_` and `-` interchangeably; the kernel normalises to `_`.
pub fn normalise(name: &str) -> String {
    name.replace('-', "_")
}

/// The modules of one kernel: name -> file, and the names built into the kernel image.
pub struct ModuleTree {
    files: BTreeMap<String, PathBuf>,
    builtin: Vec<String>,
}

impl ModuleTree {
    /// Indexes `lib/modules/<version>` of an unpacked kernel package.
    pub fn open(dir: &Path) -> Result<ModuleTree, ModuleError> {
        let mut files = BTreeMap::new();
        let mut stack = vec![dir.join("kernel")];
        while let Some(d) = stack.pop() {
            let walk = |source| ModuleError::Walk {
                path: d.clone(),
                source,
            };
            for entry in std::fs::read_dir(&d).map_err(walk)? {
                let path = entry.map_err(walk)?.path();
                if path.is_dir() {
                    stack.push(path);
                } else if let Some(stem) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".ko"))
                {
                    files.insert(normalise(stem), path);
                }
            }
        }
        let builtin_path = dir.join("modules.builtin");
        let builtin = std::fs::read_to_string(&builtin_path)
            .map_err(|source| ModuleError::Read {
                path: builtin_path,
                source,
            })?
            .lines()
            .filter_map(|l| l.rsplit('/').next()?.strip_suffix(".ko"))
            .map(normalise)
            .collect();
        Ok(ModuleTree { files, builtin })
    }

    /// True when `name` is compiled into the kernel image.
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&normalise(name))
    }

    /// The modules to load for `wanted` (built-in ones skipped), dependencies first.
    pub fn closure(&self, wanted: &[&str]) -> Result<Vec<(String, PathBuf)>, ModuleError> {
        let mut order = Vec::new();
        for w in wanted {
            self.visit(&normalise(w), "the initramfs", &mut order, 0)?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        needed_by: &str,
        order: &mut Vec<(String, PathBuf)>,
        depth: usize,
    ) -> Result<(), ModuleError> {
        if order.iter().any(|(n, _)| n == name) || self.is_builtin(name) || depth > 64 {
            return Ok(());
        }
        let Some(path) = self.files.get(name) else {
            return Err(ModuleError::Missing {
                name: name.to_string(),
                needed_by: needed_by.to_string(),
            });
        };
        let bytes = std::fs::read(path).map_err(|source| ModuleError::Read {
            path: path.clone(),
            source,
        })?;
        for dep in depends(&bytes).map_err(|(detail, offset)| ModuleError::Elf {
            path: path.clone(),
            detail,
            offset,
        })? {
            self.visit(&normalise(&dep), name, order, depth + 1)?;
        }
        if !order.iter().any(|(n, _)| n == name) {
            order.push((name.to_string(), path.clone()));
        }
        Ok(())
    }
}

fn read_u16(b: &[u8], at: usize) -> Result<u16, (&'static str, usize)> {
    at.checked_add(2)
        .and_then(|end| b.get(at..end))
        .and_then(|s| s.try_into().ok())
        .map(u16::from_le_bytes)
        .ok_or(("truncated u16", at))
}

fn read_u32(b: &[u8], at: usize) -> Result<u32, (&'static str, usize)> {
    at.checked_add(4)
        .and_then(|end| b.get(at..end))
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(("truncated u32", at))
}

fn read_u64(b: &[u8], at: usize) -> Result<usize, (&'static str, usize)> {
    at.checked_add(8)
        .and_then(|end| b.get(at..end))
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .and_then(|v| usize::try_from(v).ok())
        .ok_or(("truncated u64", at))
}

/// The module names listed in the `depends=` entry of an ELF module's `.modinfo` section.
pub fn depends(elf: &[u8]) -> Result<Vec<String>, (&'static str, usize)> {
    if elf.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        return Err(("bad ELF magic or class", 0));
    }
    let shoff = read_u64(elf, 0x28)?;
    let shentsize = usize::from(read_u16(elf, 0x3a)?);
    let shnum = usize::from(read_u16(elf, 0x3c)?);
    let shstrndx = usize::from(read_u16(elf, 0x3e)?);
    if shentsize < 64 {
        return Err(("section header entry too small", 0x3a));
    }
    let section = |i: usize| -> Result<(u32, usize, usize), (&'static str, usize)> {
        let at = i
            .checked_mul(shentsize)
            .and_then(|o| o.checked_add(shoff))
            .ok_or(("section header offset overflows", 0x28))?;
        let field = |off: usize| {
            at.checked_add(off)
                .ok_or(("section header offset overflows", at))
        };
        Ok((
            read_u32(elf, at)?,
            read_u64(elf, field(0x18)?)?,
            read_u64(elf, field(0x20)?)?,
        ))
    };
    let body = |off: usize, size: usize| {
        off.checked_add(size)
            .and_then(|end| elf.get(off..end))
            .ok_or(("section extends past the end of the file", off))
    };
    let (_, stroff, strsize) = section(shstrndx)?;
    let names = body(stroff, strsize)?;
    for i in 0..shnum {
        let (name_at, off, size) = section(i)?;
        let name = names
            .get(name_at as usize..)
            .and_then(|n| n.split(|&c| c == 0).next())
            .ok_or(("section name outside the string table", stroff))?;
        if name != b".modinfo" {
            continue;
        }
        let info = body(off, size)?;
        for entry in info.split(|&c| c == 0) {
            if let Some(list) = entry.strip_prefix(b"depends=") {
                return Ok(String::from_utf8_lossy(list)
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect());
            }
        }
        return Ok(Vec::new());
    }
    Err(("no .modinfo section", shoff))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_modules_and_truncated_elf_files_are_errors_not_panics() {
        // A real ELF file that is not a module: busybox (when installed), else this test binary.
        let exe = std::env::current_exe().unwrap();
        let path = [Path::new("/bin/busybox"), exe.as_path()]
            .into_iter()
            .find(|p| p.exists())
            .unwrap();
        let elf = std::fs::read(path).unwrap();
        assert_eq!(depends(&elf).unwrap_err().0, "no .modinfo section");
        for len in [0, 5, 6, 0x3f, 0x40, 4096, elf.len() / 2, elf.len() - 1] {
            assert!(depends(elf.get(..len).unwrap()).is_err(), "length {len}");
        }
        assert_eq!(
            depends(b"not an ELF file").unwrap_err(),
            ("bad ELF magic or class", 0)
        );
        // Section headers claimed at the very end of the address space: an error, no overflow.
        let mut hdr = vec![0u8; 64];
        hdr[..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1]);
        hdr[0x28..0x30].copy_from_slice(&(u64::MAX - 8).to_le_bytes());
        hdr[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        hdr[0x3c..0x3e].copy_from_slice(&1u16.to_le_bytes());
        assert!(depends(&hdr).is_err());
    }
}
