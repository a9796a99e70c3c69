//! Handing the engine over to a service: `lifeboat service install` run
//! for this data folder, from the app's status bar.

use crate::error::Error;

use super::{Core, Internal, RequestId};

impl Core {
    /// Runs `lifeboat service install` for this data folder in a task.
    pub(super) fn install_service(&mut self, request: RequestId) {
        let (data, config) = (self.home.data_dir.clone(), self.home.config_dir.clone());
        self.spawn(async move {
            let result = async {
                let exe = std::env::current_exe()
                    .map_err(|e| Error::Failed(format!("cannot find this program: {e}")))?;
                let out = tokio::process::Command::new(exe)
                    .arg("--data-dir")
                    .arg(&data)
                    .arg("--config-dir")
                    .arg(&config)
                    .args(["service", "install"])
                    .output()
                    .await
                    .map_err(|e| {
                        Error::Failed(format!("cannot run lifeboat service install: {e}"))
                    })?;
                let text = |b: &[u8]| crate::error::one_line(String::from_utf8_lossy(b).trim());
                if out.status.success() {
                    Ok(format!(
                        "{}; it takes over replication when this window closes",
                        text(&out.stdout)
                    ))
                } else {
                    Err(Error::Failed(
                        text(&out.stderr).trim_start_matches("error: ").to_string(),
                    ))
                }
            }
            .await;
            Internal::Finished {
                request,
                outcome: super::run::outcome(result),
                relist: false,
            }
        });
    }
}
