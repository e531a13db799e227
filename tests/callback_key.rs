//! The callback receiver follows its config without a restart, with the real binary: a
//! Kubernetes-style swap of the Secret behind `callbacks.secret_key_file` puts the new key in
//! use within seconds (the old one is refused from then on, counted in
//! `volcengine_rtc_callback_key_reloads_total`), and a reload applies `app_ids` and turning
//! callbacks off. The keys never show in the logs.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{get, key};
use volc_rtc_exporter::credentials::Secret;
use volc_rtc_exporter::sim::{CallbackSender, SimCallback};

const SEC: Duration = Duration::from_secs(1);
const APP: &str = "key-app";
const OLD: &str = "first-callback-key-0001";
const NEW: &str = "second-callback-key-0002";

/// A Secret volume as the kubelet writes it: `callback-key -> ..data/callback-key`, `..data` a
/// symlink to a timestamped directory, swapped atomically on update.
struct SecretVolume {
    dir: PathBuf,
    n: u32,
}

impl SecretVolume {
    fn create(dir: &Path, value: &str) -> SecretVolume {
        let mut v = SecretVolume {
            dir: dir.to_path_buf(),
            n: 0,
        };
        let data = v.next_dir(value);
        std::os::unix::fs::symlink(&data, dir.join("..data")).expect("link ..data");
        std::os::unix::fs::symlink("..data/callback-key", dir.join("callback-key"))
            .expect("link the key");
        v
    }

    fn next_dir(&mut self, value: &str) -> String {
        self.n += 1;
        let name = format!("..2026_12_02_00_00_0{}.000000{}", self.n, self.n);
        std::fs::create_dir_all(self.dir.join(&name)).expect("mkdir");
        std::fs::write(self.dir.join(&name).join("callback-key"), value).expect("write key");
        name
    }

    fn swap(&mut self, value: &str) {
        let old = std::fs::read_link(self.dir.join("..data")).expect("read ..data");
        let new = self.next_dir(value);
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&new, &tmp).expect("link ..data_tmp");
        std::fs::rename(&tmp, self.dir.join("..data")).expect("swap ..data");
        std::fs::remove_dir_all(self.dir.join(old)).expect("remove the old data");
    }
}

fn event(id: &str) -> SimCallback {
    SimCallback {
        at_ms: 0,
        event_type: "RecordStarted".into(),
        event_data: format!(
            r#"{{"AppId":"{APP}","BusinessId":"","RoomId":"room-k","TaskId":"{id}","Code":0,"ErrorMessage":""}}"#
        ),
        event_id: id.into(),
        app_id: APP.into(),
        nonce: "1234".into(),
    }
}

/// One attempt (no retries), signed with `secret`; the status.
async fn deliver(url: &str, secret: &str, id: &str) -> u16 {
    let mut sender = CallbackSender::new(url, Secret::new(secret)).expect("loopback url");
    sender.retries = 0;
    sender.send(&event(id)).await.status.unwrap_or(0)
}

fn config(dir: &Path, callbacks: &str) -> PathBuf {
    // The API is a closed loopback port: discovered targets fail their polls, which does not
    // matter here.
    common::write_config(
        dir,
        format!("api:\n  endpoint: http://127.0.0.1:9\n{callbacks}targets: []\n"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callback_key_and_settings_follow_the_config_without_a_restart() {
    let dir = common::scratch_dir("callback-key");
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).expect("mkdir");
    let mut volume = SecretVolume::create(&secrets, OLD);
    let section = format!(
        "callbacks:\n  secret_key_file: {}\n",
        secrets.join("callback-key").display()
    );
    let cfg = config(&dir, &section);
    let (mut child, base) =
        common::start_binary(&cfg, &dir.join("data"), &["--web.enable-lifecycle"]).await;
    let url = format!("{base}/callbacks/volcengine-rtc");

    assert_eq!(deliver(&url, OLD, "t1").await, 200);
    assert_eq!(deliver(&url, NEW, "t2").await, 401);

    // The kubelet swaps the Secret: the new key is in use within the re-read interval.
    volume.swap(NEW);
    let mut n = 2;
    child
        .poll_until(20 * SEC, "the new key to be taken", async || {
            n += 1;
            (deliver(&url, NEW, &format!("t{n}")).await == 200).then_some(())
        })
        .await;
    assert_eq!(deliver(&url, OLD, "old-after-swap").await, 401);
    let m = common::scrape_at(&base).await;
    let reloads = |outcome: &str| {
        get(
            &m,
            &key(
                "volcengine_rtc_callback_key_reloads_total",
                &[("outcome", outcome)],
            ),
        )
    };
    assert_eq!(reloads("success"), Some(1.0));
    assert_eq!(reloads("failure"), Some(0.0));

    // A reload that restricts the apps: this app is refused from the next delivery on.
    let restricted = format!("{section}  app_ids: [another-app]\n");
    config(&dir, &restricted);
    let (status, text) = common::post_reload(&base).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(deliver(&url, NEW, "t-refused").await, 403);

    // A reload without `callbacks:`: the endpoint answers 404.
    config(&dir, "");
    let (status, text) = common::post_reload(&base).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(deliver(&url, NEW, "t-off").await, 404);

    let stderr = child.stderr();
    assert!(
        stderr.contains("the callback key changed; the new key is in use"),
        "{stderr}"
    );
    for secret in [OLD, NEW] {
        assert!(!stderr.contains(secret), "a key in the log:\n{stderr}");
        assert!(!text.contains(secret));
    }
    child.terminate(10 * SEC).await;
    let _ = std::fs::remove_dir_all(dir);
}
