//! Per-machine settings: where Lifeboat keeps its data and which regions
//! it knows. The regions file is RON with no secrets in it.
//!
//! With no regions file, the embedded default is two local regions,
//! `us-east-1` and `eu-west-1`, under the data dir, so that the app and the
//! CLI work with zero setup.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::region::{Region, RegionSpec};

/// The names of the two regions of the embedded default.
pub const DEFAULT_REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];

const REGIONS_FILE: &str = "regions.ron";

/// Where this machine's Lifeboat keeps its files.
#[derive(Debug, Clone)]
pub struct Home {
    /// Region folders of the embedded default, logs, acknowledgement logs.
    pub data_dir: PathBuf,
    /// The regions file and other local settings.
    pub config_dir: PathBuf,
}

impl Home {
    /// Resolves the folders. An explicit data dir makes a self-contained
    /// home: its configuration lives beside its data unless `config_dir`
    /// says otherwise. Otherwise the platform's folders are used.
    pub fn resolve(data_dir: Option<PathBuf>, config_dir: Option<PathBuf>) -> Result<Home> {
        let dirs = || {
            directories::ProjectDirs::from("io", "Lifeboat", "lifeboat").ok_or_else(|| {
                Error::invalid(
                    "cannot find this user's home folder; pass --data-dir DIR to choose where Lifeboat keeps its files",
                )
            })
        };
        let (data_dir, config_dir) = match (data_dir, config_dir) {
            (Some(data), Some(config)) => (data, config),
            (Some(data), None) => (data.clone(), data),
            (None, Some(config)) => (dirs()?.data_dir().to_path_buf(), config),
            (None, None) => {
                let dirs = dirs()?;
                (
                    dirs.data_dir().to_path_buf(),
                    dirs.config_dir().to_path_buf(),
                )
            }
        };
        let absolute = |p: PathBuf| -> Result<PathBuf> {
            if p.is_absolute() {
                return Ok(p);
            }
            std::env::current_dir()
                .map(|cwd| cwd.join(&p))
                .map_err(|e| Error::file(&p, format!("cannot resolve the folder: {e}")))
        };
        Ok(Home {
            data_dir: absolute(data_dir)?,
            config_dir: absolute(config_dir)?,
        })
    }

    /// The regions file.
    pub fn regions_file(&self) -> PathBuf {
        self.config_dir.join(REGIONS_FILE)
    }

    /// The folder of logs.
    pub fn log_dir(&self) -> PathBuf {
        self.data_dir.join("logs")
    }

    /// The folder of workload acknowledgement logs.
    pub fn acks_dir(&self) -> PathBuf {
        self.data_dir.join("acks")
    }

    /// The embedded default regions: two local folders under the data dir.
    pub fn default_regions(&self) -> Vec<RegionSpec> {
        DEFAULT_REGIONS
            .iter()
            .map(|name| {
                let dir = self.data_dir.join("regions").join(name);
                RegionSpec::new(name, &file_url(&dir))
            })
            .collect()
    }

    /// The configured regions: the regions file, or the embedded default.
    pub fn load_regions(&self) -> Result<Regions> {
        let path = self.regions_file();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let file: RegionsFile = ron::from_str(&text).map_err(|e| {
                    Error::invalid(format!(
                        "{}: not a valid regions file ({e}); fix it or delete it to return to the embedded default",
                        path.display()
                    ))
                })?;
                for spec in &file.regions {
                    spec.validate()?;
                }
                Ok(Regions {
                    specs: file.regions,
                    embedded_default: false,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Regions {
                specs: self.default_regions(),
                embedded_default: true,
            }),
            Err(e) => Err(Error::file(&path, format!("cannot read: {e}"))),
        }
    }

    /// Writes the regions file (atomically: a temp file, then a rename).
    pub fn save_regions(&self, regions: &Regions) -> Result<()> {
        let path = self.regions_file();
        std::fs::create_dir_all(&self.config_dir)
            .map_err(|e| Error::file(&self.config_dir, format!("cannot create: {e}")))?;
        let file = RegionsFile {
            regions: regions.specs.clone(),
        };
        let text = ron::ser::to_string_pretty(&file, ron::ser::PrettyConfig::default())
            .map_err(|e| Error::file(&path, format!("cannot encode: {e}")))?;
        write_atomically(&path, text.as_bytes())
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a
/// crash never leaves a half-written file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| Error::file(&tmp, format!("cannot write: {e}")))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::file(path, format!("cannot replace: {e}")))
}

/// A `file://` URL for an absolute folder.
pub fn file_url(dir: &Path) -> String {
    url::Url::from_directory_path(dir)
        .map(|u| u.to_string())
        .unwrap_or_else(|()| format!("file://{}", dir.display()))
}

#[derive(Debug, Serialize, Deserialize)]
struct RegionsFile {
    regions: Vec<RegionSpec>,
}

/// The configured regions.
#[derive(Debug, Clone)]
pub struct Regions {
    specs: Vec<RegionSpec>,
    /// True when no regions file exists and the embedded default is in use.
    pub embedded_default: bool,
}

impl Regions {
    /// The specs, in configured order.
    pub fn specs(&self) -> &[RegionSpec] {
        &self.specs
    }

    /// The spec named `name`.
    pub fn get(&self, name: &str) -> Result<&RegionSpec> {
        Ok(&self.specs[self.index_of(name)?])
    }

    /// Where the region named `name` stands in the list.
    fn index_of(&self, name: &str) -> Result<usize> {
        self.specs
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| Error::RegionNotFound {
                name: name.to_string(),
                known: self.names().join(", "),
            })
    }

    /// Opens the region named `name`.
    pub fn open(&self, name: &str) -> Result<Region> {
        Region::open(self.get(name)?)
    }

    /// The names, in configured order.
    pub fn names(&self) -> Vec<String> {
        self.specs.iter().map(|s| s.name.clone()).collect()
    }

    /// Adds a region; its name must be new and its spec valid.
    pub fn add(&mut self, spec: RegionSpec) -> Result<()> {
        spec.validate()?;
        if self.specs.iter().any(|s| s.name == spec.name) {
            return Err(Error::invalid(format!(
                "region `{}` already exists; remove it first or pick another name",
                spec.name
            )));
        }
        self.specs.push(spec);
        self.embedded_default = false;
        Ok(())
    }

    /// Replaces the region named `old` by `spec`, in the same place; the
    /// new name must not belong to another region.
    pub fn replace(&mut self, old: &str, spec: RegionSpec) -> Result<()> {
        spec.validate()?;
        let index = self.index_of(old)?;
        if spec.name != old && self.specs.iter().any(|s| s.name == spec.name) {
            return Err(Error::invalid(format!(
                "region `{}` already exists; pick another name",
                spec.name
            )));
        }
        self.specs[index] = spec;
        self.embedded_default = false;
        Ok(())
    }

    /// Removes the region named `name` (its data is left alone).
    pub fn remove(&mut self, name: &str) -> Result<RegionSpec> {
        let index = self.index_of(name)?;
        self.embedded_default = false;
        Ok(self.specs.remove(index))
    }
}
