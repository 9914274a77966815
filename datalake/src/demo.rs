//! A deterministic generator of a synthetic, Microsoft-Sentinel-like security workspace.
//!
//! [`generate`] writes five Delta tables — `IdentityInfo`, `SigninLogs`, `AuditLogs`,
//! `SecurityEvent` and `DeviceNetworkEvents` — for a fictional organisation, `contoso.com`:
//! about 200 people in seven cities, about 40 Windows computers (workstations `WKS-1001`…,
//! servers `SRV-…`, domain controllers `DC01`/`DC02` and the file server `FS01`), and
//! `days` days of ordinary activity with a daily and weekly rhythm in each person's own
//! time zone. On top of the background a handful of attacks are planted at fixed offsets
//! from [`DemoOptions::end`]; [`INCIDENTS`] names them, with the exact users, addresses and
//! computers involved, so that documentation and tests can point at them.
//!
//! The output depends only on [`DemoOptions`]: the generator uses its own small PRNG
//! (splitmix64) rather than an external crate, and never reads the clock.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Int32Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use chrono::{DateTime, Datelike, TimeZone, Utc, Weekday};
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError};
use url::Url;

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoOptions {
    /// Size of the organisation and of its activity; 1.0 is about 200 people and 40
    /// computers. The population never shrinks below 80 people and 32 workstations, so the
    /// planted incidents are always present.
    pub scale: f64,
    /// Number of days of activity, ending at `end`.
    pub days: u32,
    /// Seed of the pseudo-random generator.
    pub seed: u64,
    /// End of the generated window (exclusive). Fixed by default so output is deterministic.
    pub end: DateTime<Utc>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            scale: 1.0,
            days: 21,
            seed: 42,
            end: Utc
                .with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
                .single()
                .expect("invariant: 2026-11-01T00:00:00Z is a valid, unambiguous UTC time"),
        }
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoSummary {
    /// Table name and number of rows written, in the order the tables were written.
    pub tables: Vec<(String, usize)>,
}

/// A failure of [`generate`].
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The options cannot produce a workspace.
    #[error("invalid demo options: {0}")]
    InvalidOptions(String),
    /// The background task building the data panicked or was cancelled.
    #[error("the demo data generation task failed")]
    GenerateTask {
        /// Why the task did not finish.
        #[source]
        source: tokio::task::JoinError,
    },
    /// Assembling an Arrow record batch failed.
    #[error("building a record batch for table {table} failed")]
    BuildBatch {
        /// The table being built.
        table: String,
        /// The Arrow error.
        #[source]
        source: ArrowError,
    },
    /// The location of a table could not be derived from the workspace URL.
    #[error("cannot derive the location of table {table} from workspace URL {workspace}")]
    TableUrl {
        /// The table.
        table: String,
        /// The workspace URL given.
        workspace: String,
        /// The URL error.
        #[source]
        source: url::ParseError,
    },
    /// The local directory of a table could not be created.
    #[error("creating directory {} failed", path.display())]
    CreateDirectory {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Opening (or preparing to create) a Delta table failed.
    #[error("opening Delta table {table} failed")]
    OpenTable {
        /// The table.
        table: String,
        /// The Delta error.
        #[source]
        source: DeltaTableError,
    },
    /// Writing a Delta table failed.
    #[error("writing Delta table {table} failed")]
    WriteTable {
        /// The table.
        table: String,
        /// The Delta error.
        #[source]
        source: DeltaTableError,
    },
}

/// An attack planted in the demo data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incident {
    /// Short identifier.
    pub name: &'static str,
    /// What happened, with the exact users, addresses, computers and (default-option) times.
    pub description: &'static str,
    /// The table holding the evidence.
    pub table: &'static str,
}

/// The planted incidents, so tests and docs can name what the demo contains.
///
/// Times are given for the default options (`end` = 2026-11-01T00:00:00Z, `days` ≥ 8); they
/// are fixed offsets before `end`, so they move with it. Users, addresses and computers do
/// not depend on any option.
pub const INCIDENTS: &[Incident] = &[
    Incident {
        name: "password_spray",
        description: "Password spray from 185.220.101.47 (DE, Frankfurt am Main; UserAgent \
            BAV2ROPC, ClientAppUsed 'Other clients'): one attempt against each of 60 distinct \
            contoso.com users between 2026-10-24 02:10 and 02:57 UTC, all ResultType 50126 \
            except a single success (ResultType 0) for lynne.robbins@contoso.com.",
        table: "SigninLogs",
    },
    Incident {
        name: "brute_force_success",
        description: "Brute force against megan.bowen@contoso.com from 45.155.205.99 (NL, \
            Amsterdam): 36 failures (ResultType 50126) from 2026-10-27 04:05 to 04:23 UTC, then \
            a success (ResultType 0, RiskLevelDuringSignIn high) at 04:24 UTC from the same \
            address, followed by sign-ins to Exchange Online (04:27) and My Signins (04:29).",
        table: "SigninLogs",
    },
    Incident {
        name: "mfa_registration_after_brute_force",
        description: "Right after the brute force, megan.bowen@contoso.com starts (04:30 UTC) \
            and completes (04:31 UTC, 'User registered security info') a new Authenticator \
            registration on 2026-10-27, initiated from 45.155.205.99.",
        table: "AuditLogs",
    },
    Incident {
        name: "impossible_travel",
        description: "alex.wilber@contoso.com (home Seattle, US) signs in successfully from \
            his home address in Seattle (US) at 2026-10-29 16:20 UTC, then 40 minutes later, \
            at 17:00 UTC, from 95.165.28.14 in Moscow (RU), and again at 17:04 UTC.",
        table: "SigninLogs",
    },
    Incident {
        name: "lateral_movement",
        description: "On workstation WKS-1023 (10.10.1.33, user nestor.wilke) an encoded \
            PowerShell (12:53 UTC) and an LSASS dump with a renamed ProcDump (12:56) precede \
            explicit-credential logons (4648) as CONTOSO\\svc-sqlbackup on 2026-10-30, then \
            4624 network logons (LogonType 3, NTLM) from 10.10.1.33 on SRV-APP01 (13:07), \
            SRV-SQL01 (13:14), SRV-WEB01 (13:22) and DC01 (13:31), and an RDP logon (LogonType \
            10) on SRV-APP02 (13:39), each with 4672 special privileges and follow-up 4688 \
            processes. svc-sqlbackup normally only logs on to SRV-BKP01 and SRV-SQL01 \
            around 01:00 UTC.",
        table: "SecurityEvent",
    },
    Incident {
        name: "lateral_movement_network",
        description: "The network side of the lateral movement: wks-1023.contoso.com \
            (10.10.1.33) fetches a payload with powershell.exe from 194.165.16.78:443 at 12:53 \
            UTC, then connects with powershell.exe to port 445 of SRV-APP01 (10.0.1.31), \
            SRV-SQL01 (10.0.1.41), SRV-WEB01 (10.0.1.51) and DC01 (10.0.0.10), fails on WinRM \
            5985, and with mstsc.exe to port 3389 of SRV-APP02 (10.0.1.32) between 13:04 and \
            13:39 UTC on 2026-10-30; the servers log the matching InboundConnectionAccepted.",
        table: "DeviceNetworkEvents",
    },
    Incident {
        name: "finance_share_access",
        description: "CONTOSO\\joni.sherman (Sales, workstation WKS-1031 / 10.10.1.41), who \
            never used the Finance share before, runs robocopy and reads the share \\\\*\\Finance \
            on FS01.contoso.com from 2026-10-31 02:14 to 02:41 UTC: one 5140 and a 5145 for \
            each of 135 distinct files (Payroll, Budget, M&A, Board, ...). Normally only \
            Finance users (e.g. patti.fernandez, lidia.holloway, diego.siciliani) touch it.",
        table: "SecurityEvent",
    },
];

/// Writes (overwriting if present) the demo tables into `workspace_url` (an object-store URL
/// of the workspace folder, e.g. `file:///abs/lake/demo` — each table goes in
/// `<workspace_url>/<TableName>`), each table as one atomic Delta commit.
pub async fn generate(
    workspace_url: &Url,
    storage_options: &HashMap<String, String>,
    opts: &DemoOptions,
) -> Result<DemoSummary, DemoError> {
    validate(opts)?;
    let started = std::time::Instant::now();
    let owned = opts.clone();
    let tables = tokio::task::spawn_blocking(move || build_tables(&owned))
        .await
        .map_err(|source| DemoError::GenerateTask { source })??;
    tracing::debug!(elapsed = ?started.elapsed(), "demo data built");

    let mut summary = DemoSummary {
        tables: Vec::with_capacity(tables.len()),
    };
    for table in tables {
        let url = table_url(workspace_url, table.name)?;
        if url.scheme() == "file" {
            if let Ok(path) = url.to_file_path() {
                std::fs::create_dir_all(&path)
                    .map_err(|source| DemoError::CreateDirectory { path, source })?;
            }
        }
        let delta = DeltaTable::try_from_url_with_storage_options(url, storage_options.clone())
            .await
            .map_err(|source| DemoError::OpenTable {
                table: table.name.to_string(),
                source,
            })?;
        delta
            .write(table.batches)
            .with_save_mode(SaveMode::Overwrite)
            .with_schema_mode(SchemaMode::Overwrite)
            .with_table_name(table.name)
            .with_description(table.description)
            .await
            .map_err(|source| DemoError::WriteTable {
                table: table.name.to_string(),
                source,
            })?;
        tracing::info!(table = table.name, rows = table.rows, "demo table written");
        summary.tables.push((table.name.to_string(), table.rows));
    }
    tracing::info!(elapsed = ?started.elapsed(), "demo workspace generated");
    Ok(summary)
}

fn validate(opts: &DemoOptions) -> Result<(), DemoError> {
    if !(opts.scale.is_finite() && opts.scale > 0.0 && opts.scale <= 100.0) {
        return Err(DemoError::InvalidOptions(format!(
            "scale must be in (0, 100], got {}",
            opts.scale
        )));
    }
    if opts.days == 0 || opts.days > 366 {
        return Err(DemoError::InvalidOptions(format!(
            "days must be in 1..=366, got {}",
            opts.days
        )));
    }
    Ok(())
}

fn table_url(workspace: &Url, table: &str) -> Result<Url, DemoError> {
    let mut base = workspace.clone();
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    base.join(table).map_err(|source| DemoError::TableUrl {
        table: table.to_string(),
        workspace: workspace.to_string(),
        source,
    })
}

// ---------------------------------------------------------------------------------------------
// Pseudo-random numbers
// ---------------------------------------------------------------------------------------------

/// splitmix64: tiny, fast and fixed forever, so the demo never changes with crate versions.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Self {
        let mut rng = Rng(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        rng.next_u64();
        rng
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..hi` (`lo` when the range is empty).
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below((hi - lo) as u64) as i64
    }

    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
        let mut x = self.below(total);
        for (i, w) in weights.iter().enumerate() {
            if x < u64::from(*w) {
                return i;
            }
            x -= u64::from(*w);
        }
        weights.len() - 1
    }

    fn guid(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0x0fff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }

    fn hex40(&mut self) -> String {
        let (a, b, c) = (self.next_u64(), self.next_u64(), self.next_u64());
        format!("{a:016x}{b:016x}{:08x}", c >> 32)
    }

    fn ephemeral_port(&mut self) -> i32 {
        self.range(49152, 65535) as i32
    }
}

// ---------------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------------

const SEC: i64 = 1_000_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// Incident start times, as offsets before `end`.
const SPRAY_OFFSET: i64 = 7 * DAY + 21 * HOUR + 50 * MIN;
const BRUTE_OFFSET: i64 = 4 * DAY + 19 * HOUR + 55 * MIN;
const TRAVEL_OFFSET: i64 = 2 * DAY + 7 * HOUR + 40 * MIN;
const LATERAL_OFFSET: i64 = DAY + 10 * HOUR + 55 * MIN;
const FINANCE_OFFSET: i64 = 21 * HOUR + 46 * MIN;

/// Whether the (UTC) calendar day starting at `day` is Monday to Friday.
fn is_workday(day: i64) -> bool {
    !matches!(
        DateTime::<Utc>::from_timestamp_micros(day + 12 * HOUR).map(|d| d.weekday()),
        Some(Weekday::Sat | Weekday::Sun)
    )
}

// ---------------------------------------------------------------------------------------------
// The organisation
// ---------------------------------------------------------------------------------------------

const DOMAIN: &str = "CONTOSO";
const TENANT_ID: &str = "4a7c9e21-5b3d-4f8a-9c6e-2d1b0f8e7a63";

/// A geolocation as SigninLogs reports it.
struct Place {
    city: &'static str,
    state: &'static str,
    country: &'static str,
    lat: f64,
    lon: f64,
}

impl Place {
    fn details_json(&self) -> String {
        format!(
            r#"{{"city":"{}","state":"{}","countryOrRegion":"{}","geoCoordinates":{{"latitude":{:.4},"longitude":{:.4}}}}}"#,
            self.city, self.state, self.country, self.lat, self.lon
        )
    }
}

/// Where people live and work.
struct HomeCity {
    place: Place,
    /// Offset from UTC in minutes (summer time; the window is mostly in October).
    tz_min: i64,
    /// First two octets of residential broadband addresses.
    isp: &'static str,
    /// First two octets of mobile carrier addresses.
    mobile: &'static str,
    /// Egress address of the office.
    office_ip: &'static str,
    weight: u32,
}

const fn place(
    city: &'static str,
    state: &'static str,
    country: &'static str,
    lat: f64,
    lon: f64,
) -> Place {
    Place {
        city,
        state,
        country,
        lat,
        lon,
    }
}

static CITIES: [HomeCity; 7] = [
    HomeCity {
        place: place("Seattle", "Washington", "US", 47.6062, -122.3321),
        tz_min: -420,
        isp: "73.53",
        mobile: "172.56",
        office_ip: "64.124.18.5",
        weight: 30,
    },
    HomeCity {
        place: place("New York", "New York", "US", 40.7128, -74.0060),
        tz_min: -240,
        isp: "98.116",
        mobile: "172.58",
        office_ip: "38.104.12.34",
        weight: 18,
    },
    HomeCity {
        place: place("Austin", "Texas", "US", 30.2672, -97.7431),
        tz_min: -300,
        isp: "70.114",
        mobile: "172.59",
        office_ip: "66.90.140.10",
        weight: 10,
    },
    HomeCity {
        place: place("London", "England", "GB", 51.5074, -0.1278),
        tz_min: 60,
        isp: "86.128",
        mobile: "82.132",
        office_ip: "81.145.64.20",
        weight: 14,
    },
    HomeCity {
        place: place("Berlin", "Berlin", "DE", 52.5200, 13.4050),
        tz_min: 120,
        isp: "91.64",
        mobile: "80.187",
        office_ip: "212.227.40.15",
        weight: 10,
    },
    HomeCity {
        place: place("Bengaluru", "Karnataka", "IN", 12.9716, 77.5946),
        tz_min: 330,
        isp: "106.51",
        mobile: "157.48",
        office_ip: "49.207.48.5",
        weight: 10,
    },
    HomeCity {
        place: place("Toronto", "Ontario", "CA", 43.6532, -79.3832),
        tz_min: -240,
        isp: "174.88",
        mobile: "70.52",
        office_ip: "142.112.30.8",
        weight: 8,
    },
];

const SEATTLE: usize = 0;
const NEW_YORK: usize = 1;
const AUSTIN: usize = 2;
const LONDON: usize = 3;

static PLACE_SPRAY: Place = place("Frankfurt am Main", "Hessen", "DE", 50.1109, 8.6821);
static PLACE_BRUTE: Place = place("Amsterdam", "Noord-Holland", "NL", 52.3676, 4.9041);
static PLACE_TRAVEL: Place = place("Moscow", "Moscow", "RU", 55.7558, 37.6173);

const SPRAY_IP: &str = "185.220.101.47";
const BRUTE_IP: &str = "45.155.205.99";
const TRAVEL_IP: &str = "95.165.28.14";
const PAYLOAD_IP: &str = "194.165.16.78";

struct Department {
    name: &'static str,
    titles: &'static [&'static str],
    weight: u32,
}

static DEPARTMENTS: [Department; 10] = [
    Department {
        name: "Engineering",
        titles: &[
            "Software Engineer",
            "Senior Software Engineer",
            "Engineering Manager",
            "QA Engineer",
            "DevOps Engineer",
        ],
        weight: 25,
    },
    Department {
        name: "Sales",
        titles: &[
            "Account Executive",
            "Sales Manager",
            "Sales Development Representative",
            "Solutions Consultant",
        ],
        weight: 18,
    },
    Department {
        name: "Marketing",
        titles: &[
            "Marketing Specialist",
            "Content Strategist",
            "Marketing Manager",
            "Product Marketing Manager",
        ],
        weight: 9,
    },
    Department {
        name: "Finance",
        titles: &[
            "Financial Analyst",
            "Accountant",
            "Accounts Payable Specialist",
        ],
        weight: 8,
    },
    Department {
        name: "HR",
        titles: &["HR Generalist", "Recruiter", "HR Business Partner"],
        weight: 5,
    },
    Department {
        name: "IT",
        titles: &[
            "Systems Administrator",
            "IT Support Specialist",
            "Network Engineer",
            "Security Analyst",
        ],
        weight: 5,
    },
    Department {
        name: "Legal",
        titles: &["Paralegal", "Corporate Counsel"],
        weight: 3,
    },
    Department {
        name: "Operations",
        titles: &[
            "Operations Analyst",
            "Project Manager",
            "Program Manager",
            "Operations Manager",
        ],
        weight: 10,
    },
    Department {
        name: "Customer Success",
        titles: &[
            "Customer Success Manager",
            "Support Engineer",
            "Support Team Lead",
        ],
        weight: 15,
    },
    Department {
        name: "Executive",
        titles: &["Vice President", "Chief of Staff"],
        weight: 2,
    },
];

struct NamedUser {
    first: &'static str,
    last: &'static str,
    dept: &'static str,
    title: &'static str,
    city: usize,
    wks: usize,
}

/// People the incidents need, always present at the same index.
static NAMED: [NamedUser; 11] = [
    NamedUser {
        first: "Lee",
        last: "Gu",
        dept: "IT",
        title: "Director of IT",
        city: SEATTLE,
        wks: 0,
    },
    NamedUser {
        first: "Isaiah",
        last: "Langer",
        dept: "IT",
        title: "Systems Administrator",
        city: SEATTLE,
        wks: 7,
    },
    NamedUser {
        first: "Megan",
        last: "Bowen",
        dept: "Marketing",
        title: "Marketing Manager",
        city: SEATTLE,
        wks: 1,
    },
    NamedUser {
        first: "Alex",
        last: "Wilber",
        dept: "Sales",
        title: "Account Executive",
        city: SEATTLE,
        wks: 4,
    },
    NamedUser {
        first: "Nestor",
        last: "Wilke",
        dept: "Operations",
        title: "Operations Manager",
        city: NEW_YORK,
        wks: 22,
    },
    NamedUser {
        first: "Joni",
        last: "Sherman",
        dept: "Sales",
        title: "Sales Development Representative",
        city: AUSTIN,
        wks: 30,
    },
    NamedUser {
        first: "Lynne",
        last: "Robbins",
        dept: "HR",
        title: "HR Business Partner",
        city: LONDON,
        wks: 11,
    },
    NamedUser {
        first: "Patti",
        last: "Fernandez",
        dept: "Finance",
        title: "Controller",
        city: SEATTLE,
        wks: 2,
    },
    NamedUser {
        first: "Lidia",
        last: "Holloway",
        dept: "Finance",
        title: "Financial Analyst",
        city: NEW_YORK,
        wks: 13,
    },
    NamedUser {
        first: "Diego",
        last: "Siciliani",
        dept: "Finance",
        title: "Accountant",
        city: AUSTIN,
        wks: 26,
    },
    NamedUser {
        first: "Adele",
        last: "Vance",
        dept: "Executive",
        title: "Chief Executive Officer",
        city: SEATTLE,
        wks: 3,
    },
];

const U_LEE: usize = 0;
const U_MEGAN: usize = 2;
const U_ALEX: usize = 3;
const U_NESTOR: usize = 4;
const U_JONI: usize = 5;
const U_LYNNE: usize = 6;
/// The service account `svc-sqlbackup`, right after the named people.
const U_SVC: usize = NAMED.len();

static FIRST_NAMES: [&str; 64] = [
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Christopher",
    "Lisa",
    "Daniel",
    "Nancy",
    "Matthew",
    "Sandra",
    "Anthony",
    "Ashley",
    "Mark",
    "Emily",
    "Priya",
    "Rahul",
    "Ananya",
    "Arjun",
    "Wei",
    "Mei",
    "Hiroshi",
    "Yuki",
    "Lukas",
    "Sophie",
    "Felix",
    "Hannah",
    "Oliver",
    "Amelia",
    "Harry",
    "Isla",
    "Noah",
    "Chloe",
    "Liam",
    "Emma",
    "Lucas",
    "Olivia",
    "Mateo",
    "Sofia",
    "Omar",
    "Fatima",
    "Kwame",
    "Amara",
    "Ethan",
    "Grace",
    "Ryan",
    "Zoe",
    "Aisha",
    "Tomas",
];

static LAST_NAMES: [&str; 64] = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Thompson",
    "White",
    "Harris",
    "Clark",
    "Lewis",
    "Walker",
    "Hall",
    "Young",
    "King",
    "Wright",
    "Patel",
    "Sharma",
    "Iyer",
    "Reddy",
    "Chen",
    "Wang",
    "Tanaka",
    "Sato",
    "Mueller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Becker",
    "Evans",
    "Roberts",
    "Hughes",
    "Edwards",
    "Murphy",
    "Campbell",
    "Stewart",
    "Nguyen",
    "Kim",
    "Park",
    "Singh",
    "Khan",
    "Okafor",
    "Mensah",
    "Rossi",
    "Costa",
    "Silva",
    "Santos",
    "Novak",
    "Larsen",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum MobileOs {
    Ios,
    Android,
}

struct User {
    upn: String,
    sam: String,
    display: String,
    id: String,
    dept: &'static str,
    title: Option<&'static str>,
    city: Option<&'static HomeCity>,
    home_ip: String,
    mobile: Option<MobileOs>,
    wks: usize,
    remote_prob: f64,
    extra_signins: u64,
    enabled: bool,
    service: bool,
    admin: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Workstation,
    DomainController,
    FileServer,
    Server,
}

struct Computer {
    name: String,
    fqdn: String,
    device_name: String,
    ip: String,
    mde_id: String,
    aad_id: String,
    kind: Kind,
}

struct World {
    start: i64,
    end: i64,
    users: Vec<User>,
    computers: Vec<Computer>,
    dcs: [usize; 2],
    fs01: usize,
    app01: usize,
    app02: usize,
    sql01: usize,
    web01: usize,
    bkp01: usize,
    finance: Vec<String>,
}

impl World {
    fn build(opts: &DemoOptions) -> World {
        let mut rng = Rng::new(opts.seed, 1);
        let end = opts.end.timestamp_micros();
        let start = end - i64::from(opts.days) * DAY;

        // Computers: workstations first, then the servers in a fixed order.
        let n_wks = ((32.0 * opts.scale).round() as usize).max(32);
        let mut computers = Vec::with_capacity(n_wks + 8);
        for i in 0..n_wks {
            let name = format!("WKS-{}", 1001 + i);
            let ip = format!("10.10.{}.{}", 1 + i / 200, 11 + i % 200);
            computers.push(new_computer(&mut rng, name, ip, Kind::Workstation));
        }
        let servers: [(&str, &str, Kind); 8] = [
            ("DC01", "10.0.0.10", Kind::DomainController),
            ("DC02", "10.0.0.11", Kind::DomainController),
            ("FS01", "10.0.1.20", Kind::FileServer),
            ("SRV-APP01", "10.0.1.31", Kind::Server),
            ("SRV-APP02", "10.0.1.32", Kind::Server),
            ("SRV-SQL01", "10.0.1.41", Kind::Server),
            ("SRV-WEB01", "10.0.1.51", Kind::Server),
            ("SRV-BKP01", "10.0.1.61", Kind::Server),
        ];
        for (name, ip, kind) in servers {
            computers.push(new_computer(
                &mut rng,
                name.to_string(),
                ip.to_string(),
                kind,
            ));
        }

        // People: the named ones, the service account, then random employees.
        let n_users = ((200.0 * opts.scale).round() as usize).max(80);
        let mut users = Vec::with_capacity(n_users + 1);
        let mut taken = HashSet::new();
        for n in &NAMED {
            let local = format!("{}.{}", n.first, n.last).to_lowercase();
            taken.insert(local.clone());
            let city = &CITIES[n.city];
            users.push(User {
                upn: format!("{local}@contoso.com"),
                sam: local,
                display: format!("{} {}", n.first, n.last),
                id: rng.guid(),
                dept: n.dept,
                title: Some(n.title),
                city: Some(city),
                home_ip: residential_ip(&mut rng, city),
                mobile: Some(if rng.chance(0.6) {
                    MobileOs::Ios
                } else {
                    MobileOs::Android
                }),
                wks: n.wks,
                remote_prob: 0.3,
                extra_signins: 3,
                enabled: true,
                service: false,
                admin: n.dept == "IT",
            });
        }
        users.push(User {
            upn: "svc-sqlbackup@contoso.com".to_string(),
            sam: "svc-sqlbackup".to_string(),
            display: "SQL Backup Service".to_string(),
            id: rng.guid(),
            dept: "IT",
            title: None,
            city: None,
            home_ip: String::new(),
            mobile: None,
            wks: 0,
            remote_prob: 0.0,
            extra_signins: 0,
            enabled: true,
            service: true,
            admin: false,
        });
        let city_weights: Vec<u32> = CITIES.iter().map(|c| c.weight).collect();
        let dept_weights: Vec<u32> = DEPARTMENTS.iter().map(|d| d.weight).collect();
        // The incident actors' workstations are theirs alone; everyone else shares the rest.
        let reserved: HashSet<usize> = NAMED.iter().map(|n| n.wks).collect();
        let shared: Vec<usize> = (0..n_wks).filter(|i| !reserved.contains(i)).collect();
        let mut next_wks = 0usize;
        while users.len() < n_users + 1 {
            let first = *rng.pick(&FIRST_NAMES);
            let last = *rng.pick(&LAST_NAMES);
            let base = format!("{first}.{last}").to_lowercase();
            let mut local = base.clone();
            let mut k = 2;
            while taken.contains(&local) {
                local = format!("{base}{k}");
                k += 1;
            }
            taken.insert(local.clone());
            let city = &CITIES[rng.weighted(&city_weights)];
            let dept = &DEPARTMENTS[rng.weighted(&dept_weights)];
            let mobile = match rng.below(10) {
                0..=4 => Some(MobileOs::Ios),
                5..=7 => Some(MobileOs::Android),
                _ => None,
            };
            users.push(User {
                upn: format!("{local}@contoso.com"),
                sam: local,
                display: format!("{first} {last}"),
                id: rng.guid(),
                dept: dept.name,
                title: Some(*rng.pick(dept.titles)),
                city: Some(city),
                home_ip: residential_ip(&mut rng, city),
                mobile,
                wks: shared[next_wks % shared.len()],
                remote_prob: 0.15 + 0.5 * rng.unit(),
                extra_signins: rng.below(5),
                enabled: !rng.chance(0.03),
                service: false,
                admin: dept.name == "IT",
            });
            next_wks += 1;
        }

        World {
            start,
            end,
            users,
            computers,
            dcs: [n_wks, n_wks + 1],
            fs01: n_wks + 2,
            app01: n_wks + 3,
            app02: n_wks + 4,
            sql01: n_wks + 5,
            web01: n_wks + 6,
            bkp01: n_wks + 7,
            finance: finance_files(),
        }
    }

    fn servers(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.computers.len()).filter(|c| self.computers[*c].kind != Kind::Workstation)
    }

    /// When an incident starting `offset` before `end` happens, squeezed into short windows.
    fn incident_at(&self, offset: i64) -> i64 {
        let room = self.end - self.start - 2 * HOUR;
        if offset <= room {
            self.end - offset
        } else {
            self.end - ((i128::from(offset) * i128::from(room)) / i128::from(SPRAY_OFFSET)) as i64
        }
    }
}

fn new_computer(rng: &mut Rng, name: String, ip: String, kind: Kind) -> Computer {
    let fqdn = format!("{name}.contoso.com");
    Computer {
        device_name: fqdn.to_lowercase(),
        fqdn,
        name,
        ip,
        mde_id: rng.hex40(),
        aad_id: rng.guid(),
        kind,
    }
}

fn residential_ip(rng: &mut Rng, city: &HomeCity) -> String {
    format!("{}.{}.{}", city.isp, 1 + rng.below(254), 1 + rng.below(254))
}

// ---------------------------------------------------------------------------------------------
// Catalogues
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum AppKind {
    Desktop,
    Browser,
    Mobile,
}

struct App {
    name: &'static str,
    id: &'static str,
    kind: AppKind,
    weight: u32,
    technical: bool,
}

static APPS: [App; 8] = [
    App {
        name: "Office 365 Exchange Online",
        id: "00000002-0000-0ff1-ce00-000000000000",
        kind: AppKind::Desktop,
        weight: 22,
        technical: false,
    },
    App {
        name: "Microsoft Teams",
        id: "1fec8e78-bce4-4aaf-ab1b-5451cc387264",
        kind: AppKind::Desktop,
        weight: 22,
        technical: false,
    },
    App {
        name: "Office 365 SharePoint Online",
        id: "00000003-0000-0ff1-ce00-000000000000",
        kind: AppKind::Browser,
        weight: 12,
        technical: false,
    },
    App {
        name: "OfficeHome",
        id: "4765445b-32c6-49b0-83e6-1d93765276ca",
        kind: AppKind::Browser,
        weight: 10,
        technical: false,
    },
    App {
        name: "Microsoft Office",
        id: "d3590ed6-52b3-4102-aeff-aad2292ab01c",
        kind: AppKind::Desktop,
        weight: 12,
        technical: false,
    },
    App {
        name: "My Apps",
        id: "2793995e-0a7d-40d7-bd35-6968ba142197",
        kind: AppKind::Browser,
        weight: 3,
        technical: false,
    },
    App {
        name: "Azure Portal",
        id: "c44b4083-3bb0-49c1-b47d-974e53cbdf3c",
        kind: AppKind::Browser,
        weight: 5,
        technical: true,
    },
    App {
        name: "Microsoft Azure CLI",
        id: "04b07795-8ddb-461a-bbee-02f9e1bf7b46",
        kind: AppKind::Desktop,
        weight: 3,
        technical: true,
    },
];
const APP_EXCHANGE: usize = 0;
const APP_TEAMS: usize = 1;
const APP_SHAREPOINT: usize = 2;
const APP_OFFICEHOME: usize = 3;

static APP_OUTLOOK_MOBILE: App = App {
    name: "Outlook Mobile",
    id: "27922004-5251-4030-b22d-91ecd9a37ea4",
    kind: AppKind::Mobile,
    weight: 0,
    technical: false,
};
static APP_MY_SIGNINS: App = App {
    name: "My Signins",
    id: "19db86c3-b2b9-44cc-b339-36da233a3be2",
    kind: AppKind::Browser,
    weight: 0,
    technical: false,
};

const UA_EDGE: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0";
const UA_CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36";
const UA_FIREFOX: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0";
const UA_DESKTOP: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; WebView/3.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.102 Safari/537.36 Edge/18.19045";
const UA_IOS: &str =
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148";
const UA_ANDROID: &str = "Mozilla/5.0 (Linux; Android 14; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36";
const UA_ROPC: &str = "BAV2ROPC";

const CLIENT_BROWSER: &str = "Browser";
const CLIENT_MODERN: &str = "Mobile Apps and Desktop clients";
const CLIENT_OTHER: &str = "Other clients";

const MFA: &str = "multiFactorAuthentication";
const SFA: &str = "singleFactorAuthentication";

fn result_description(code: &str) -> Option<&'static str> {
    match code {
        "50126" => Some("Error validating credentials due to invalid username or password."),
        "50053" => Some(
            "The account is locked, you've tried to sign in too many times with an incorrect user ID or password.",
        ),
        "50074" => Some("Strong Authentication is required."),
        "50140" => Some(
            "This error occurred due to 'Keep me signed in' interrupt when the user was signing in.",
        ),
        "53003" => Some(
            "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.",
        ),
        _ => None,
    }
}

fn activity(event_id: i32) -> &'static str {
    match event_id {
        4624 => "4624 - An account was successfully logged on.",
        4625 => "4625 - An account failed to log on.",
        4634 => "4634 - An account was logged off.",
        4648 => "4648 - A logon was attempted using explicit credentials.",
        4672 => "4672 - Special privileges assigned to new logon.",
        4688 => "4688 - A new process has been created.",
        5140 => "5140 - A network share object was accessed.",
        5145 => "5145 - A network share object was checked to see whether client can be granted desired access.",
        _ => "Unknown event",
    }
}

/// Processes people start on their workstations: image path and command line, `{u}` being
/// the account name.
static USER_PROCESSES: [(&str, &str); 10] = [
    (
        r"C:\Program Files (x86)\Microsoft\Edge\Application\msedge.exe",
        r#""C:\Program Files (x86)\Microsoft\Edge\Application\msedge.exe" --profile-directory=Default"#,
    ),
    (
        r"C:\Program Files\Microsoft Office\root\Office16\EXCEL.EXE",
        r#""C:\Program Files\Microsoft Office\root\Office16\EXCEL.EXE" /dde"#,
    ),
    (
        r"C:\Program Files\Microsoft Office\root\Office16\WINWORD.EXE",
        r#""C:\Program Files\Microsoft Office\root\Office16\WINWORD.EXE" /n"#,
    ),
    (
        r"C:\Program Files\Microsoft Office\root\Office16\POWERPNT.EXE",
        r#""C:\Program Files\Microsoft Office\root\Office16\POWERPNT.EXE""#,
    ),
    (
        r"C:\Windows\System32\notepad.exe",
        r#""C:\Windows\system32\notepad.exe""#,
    ),
    (
        r"C:\Program Files\Adobe\Acrobat DC\Acrobat\Acrobat.exe",
        r#""C:\Program Files\Adobe\Acrobat DC\Acrobat\Acrobat.exe""#,
    ),
    (
        r"C:\Windows\System32\SnippingTool.exe",
        r#""C:\Windows\System32\SnippingTool.exe""#,
    ),
    (
        r"C:\Windows\System32\Taskmgr.exe",
        r#""C:\Windows\system32\taskmgr.exe" /4"#,
    ),
    (
        r"C:\Windows\System32\calc.exe",
        r#""C:\Windows\System32\calc.exe""#,
    ),
    (
        r"C:\Program Files (x86)\Microsoft\Edge\Application\msedge.exe",
        r#""C:\Program Files (x86)\Microsoft\Edge\Application\msedge.exe" --single-argument https://contoso.sharepoint.com/sites/intranet"#,
    ),
];

static STARTUP_PROCESSES: [(&str, &str); 4] = [
    (r"C:\Windows\explorer.exe", r"C:\Windows\Explorer.EXE"),
    (
        r"C:\Program Files\Microsoft OneDrive\OneDrive.exe",
        r#""C:\Program Files\Microsoft OneDrive\OneDrive.exe" /background"#,
    ),
    (
        r"C:\Program Files\WindowsApps\MSTeams_24295.605.3225.8804_x64__8wekyb3d8bbwe\ms-teams.exe",
        r#""C:\Program Files\WindowsApps\MSTeams_24295.605.3225.8804_x64__8wekyb3d8bbwe\ms-teams.exe" msteams:system-initiated"#,
    ),
    (
        r"C:\Program Files\Microsoft Office\root\Office16\OUTLOOK.EXE",
        r#""C:\Program Files\Microsoft Office\root\Office16\OUTLOOK.EXE" "#,
    ),
];

static ENGINEER_PROCESSES: [(&str, &str); 4] = [
    (
        r"C:\Users\{u}\AppData\Local\Programs\Microsoft VS Code\Code.exe",
        r#""C:\Users\{u}\AppData\Local\Programs\Microsoft VS Code\Code.exe""#,
    ),
    (
        r"C:\Program Files\Git\cmd\git.exe",
        r#""C:\Program Files\Git\cmd\git.exe" fetch origin"#,
    ),
    (
        r"C:\Program Files\Git\cmd\git.exe",
        r#""C:\Program Files\Git\cmd\git.exe" pull --rebase origin main"#,
    ),
    (
        r"C:\Program Files\dotnet\dotnet.exe",
        r#""C:\Program Files\dotnet\dotnet.exe" build"#,
    ),
];

static ADMIN_PROCESSES: [(&str, &str); 5] = [
    (
        r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
        r#""C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe" "#,
    ),
    (
        r"C:\Windows\System32\mmc.exe",
        r#""C:\Windows\system32\mmc.exe" "C:\Windows\system32\dsa.msc""#,
    ),
    (
        r"C:\Windows\System32\mmc.exe",
        r#""C:\Windows\system32\mmc.exe" "C:\Windows\system32\gpmc.msc""#,
    ),
    (
        r"C:\Windows\System32\cmd.exe",
        r#""C:\Windows\system32\cmd.exe" "#,
    ),
    (
        r"C:\Windows\System32\ServerManager.exe",
        r#""C:\Windows\system32\ServerManager.exe""#,
    ),
];

static SERVER_PROCESSES: [(&str, &str); 6] = [
    (
        r"C:\Windows\System32\wbem\WmiPrvSE.exe",
        r"C:\Windows\system32\wbem\wmiprvse.exe -secured -Embedding",
    ),
    (r"C:\Windows\System32\taskhostw.exe", r"taskhostw.exe"),
    (
        r"C:\Windows\System32\svchost.exe",
        r"C:\Windows\system32\svchost.exe -k netsvcs -p -s Schedule",
    ),
    (
        r"C:\Windows\System32\conhost.exe",
        r"\??\C:\Windows\system32\conhost.exe 0xffffffff -ForceV1",
    ),
    (
        r"C:\Windows\System32\gpupdate.exe",
        r"gpupdate.exe /target:computer",
    ),
    (
        r"C:\Windows\System32\backgroundTaskHost.exe",
        r#""C:\Windows\system32\backgroundTaskHost.exe" -ServerName:BackgroundTaskHost.WebAccountProvider"#,
    ),
];

struct Endpoint {
    url: &'static str,
    ip: &'static str,
    port: i32,
    process: &'static str,
    cmd: &'static str,
    /// `None`: runs as the signed-in user.
    account: Option<&'static str>,
    weight: u32,
}

const EDGE_NET_CMD: &str = r#""msedge.exe" --type=utility --utility-sub-type=network.mojom.NetworkService --lang=en-US --service-sandbox-type=none"#;

static USER_ENDPOINTS: [Endpoint; 10] = [
    Endpoint {
        url: "outlook.office365.com",
        ip: "52.96.165.18",
        port: 443,
        process: "OUTLOOK.EXE",
        cmd: r#""OUTLOOK.EXE" "#,
        account: None,
        weight: 18,
    },
    Endpoint {
        url: "teams.microsoft.com",
        ip: "52.113.194.132",
        port: 443,
        process: "ms-teams.exe",
        cmd: r#""ms-teams.exe" msteams:system-initiated"#,
        account: None,
        weight: 16,
    },
    Endpoint {
        url: "contoso.sharepoint.com",
        ip: "13.107.136.10",
        port: 443,
        process: "msedge.exe",
        cmd: EDGE_NET_CMD,
        account: None,
        weight: 10,
    },
    Endpoint {
        url: "contoso-my.sharepoint.com",
        ip: "13.107.136.10",
        port: 443,
        process: "OneDrive.exe",
        cmd: r#""OneDrive.exe" /background"#,
        account: None,
        weight: 8,
    },
    Endpoint {
        url: "login.microsoftonline.com",
        ip: "20.190.151.68",
        port: 443,
        process: "msedge.exe",
        cmd: EDGE_NET_CMD,
        account: None,
        weight: 8,
    },
    Endpoint {
        url: "www.office.com",
        ip: "13.107.6.156",
        port: 443,
        process: "msedge.exe",
        cmd: EDGE_NET_CMD,
        account: None,
        weight: 6,
    },
    Endpoint {
        url: "www.google.com",
        ip: "142.250.185.68",
        port: 443,
        process: "msedge.exe",
        cmd: EDGE_NET_CMD,
        account: None,
        weight: 6,
    },
    Endpoint {
        url: "www.bing.com",
        ip: "204.79.197.200",
        port: 443,
        process: "msedge.exe",
        cmd: EDGE_NET_CMD,
        account: None,
        weight: 4,
    },
    Endpoint {
        url: "www.linkedin.com",
        ip: "13.107.42.14",
        port: 443,
        process: "msedge.exe",
        cmd: EDGE_NET_CMD,
        account: None,
        weight: 4,
    },
    Endpoint {
        url: "github.com",
        ip: "140.82.121.4",
        port: 443,
        process: "msedge.exe",
        cmd: EDGE_NET_CMD,
        account: None,
        weight: 3,
    },
];

static SYSTEM_ENDPOINTS: [Endpoint; 3] = [
    Endpoint {
        url: "settings-win.data.microsoft.com",
        ip: "20.42.65.92",
        port: 443,
        process: "svchost.exe",
        cmd: "svchost.exe -k NetworkService -p -s DoSvc",
        account: Some("network service"),
        weight: 4,
    },
    Endpoint {
        url: "ctldl.windowsupdate.com",
        ip: "93.184.221.240",
        port: 80,
        process: "svchost.exe",
        cmd: "svchost.exe -k netsvcs -p -s wuauserv",
        account: Some("system"),
        weight: 2,
    },
    Endpoint {
        url: "winatp-gw-eus.microsoft.com",
        ip: "20.42.73.26",
        port: 443,
        process: "MsSense.exe",
        cmd: r#""MsSense.exe""#,
        account: Some("system"),
        weight: 5,
    },
];

const SHARE_FINANCE: &str = r"\\*\Finance";
const SHARE_SHARED: &str = r"\\*\Shared";
const SHARE_USERS: &str = r"\\*\Users";

fn department_share(dept: &str) -> &'static str {
    match dept {
        "Engineering" => r"\\*\Engineering",
        "Sales" => r"\\*\Sales",
        "Marketing" => r"\\*\Marketing",
        "Finance" => SHARE_FINANCE,
        "HR" => r"\\*\HR",
        "IT" => r"\\*\IT$",
        "Legal" => r"\\*\Legal",
        "Operations" => r"\\*\Operations",
        "Customer Success" => r"\\*\Support",
        _ => SHARE_SHARED,
    }
}

static SHARED_FILES: [&str; 8] = [
    r"Templates\Contoso_Letterhead.dotx",
    r"Templates\Contoso_Slide_Template.potx",
    r"Policies\Travel_Policy_2026.pdf",
    r"Policies\Expense_Policy_2026.pdf",
    r"Policies\Acceptable_Use_Policy.pdf",
    r"Org\Org_Chart_2026-10.pdf",
    r"Events\Holiday_Party_2026.pptx",
    r"Facilities\Seating_Plan_HQ.xlsx",
];

/// Everything on the Finance share; the insider reads all of it.
fn finance_files() -> Vec<String> {
    let mut files = Vec::with_capacity(140);
    for m in 1..=10 {
        files.push(format!(r"Payroll\2026\Payroll_2026-{m:02}.xlsx"));
        files.push(format!(r"Payroll\2026\Payroll_2026-{m:02}_Summary.pdf"));
    }
    for q in ["Q1", "Q2", "Q3"] {
        files.push(format!(r"Reports\2026\{q}_Financial_Statements.xlsx"));
        files.push(format!(r"Reports\2026\{q}_Management_Accounts.pdf"));
    }
    for v in 1..=6 {
        files.push(format!(r"Budget\FY2027\FY2027_Budget_Draft_v{v}.xlsx"));
    }
    for d in [
        "Sales",
        "Engineering",
        "Marketing",
        "Operations",
        "HR",
        "IT",
    ] {
        files.push(format!(r"Budget\FY2027\Departments\{d}_Budget_FY2027.xlsx"));
    }
    for k in 0..80 {
        files.push(format!(r"AP\Invoices\2026-10\INV-{:05}.pdf", 24011 + k * 7));
    }
    for f in [
        r"M&A\Project Falcon\Falcon_Valuation_Model.xlsx",
        r"M&A\Project Falcon\Falcon_LOI_Draft.docx",
        r"M&A\Project Falcon\Falcon_Due_Diligence_Checklist.xlsx",
        r"M&A\Project Falcon\Falcon_Board_Memo.docx",
        r"Tax\2025_Corporate_Tax_Return.pdf",
        r"Tax\2025_Transfer_Pricing_Study.pdf",
        r"Tax\2026_Estimated_Payments.xlsx",
        r"Audit\2026\Audit_Workpapers_Q1.xlsx",
        r"Audit\2026\Audit_Workpapers_Q2.xlsx",
        r"Audit\2026\Audit_Workpapers_Q3.xlsx",
        r"Audit\2026\Management_Letter_Draft.docx",
        r"Board\2026-Q3\Board_Deck_Q3.pptx",
        r"Board\2026-Q3\CFO_Report_Q3.docx",
        r"Banking\Wire_Templates.xlsx",
        r"Banking\Bank_Signatories_2026.pdf",
        r"Banking\Credit_Facility_Agreement.pdf",
        r"Compensation\Executive_Compensation_2026.xlsx",
    ] {
        files.push(f.to_string());
    }
    files
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------------------------

struct SigninRow {
    ts: i64,
    user: usize,
    app: &'static App,
    ip: String,
    place: &'static Place,
    result: &'static str,
    client: &'static str,
    user_agent: &'static str,
    device: String,
    ca_status: &'static str,
    risk: &'static str,
    interactive: bool,
    auth: &'static str,
    correlation: String,
}

#[derive(Default)]
struct SecRow {
    ts: i64,
    computer: usize,
    event_id: i32,
    account: Option<String>,
    account_type: Option<&'static str>,
    logon_type: Option<i32>,
    ip: Option<String>,
    workstation: Option<String>,
    target_user: Option<String>,
    target_domain: Option<&'static str>,
    subject_user: Option<String>,
    logon_process: Option<&'static str>,
    auth_package: Option<&'static str>,
    share: Option<&'static str>,
    object: Option<String>,
    process: Option<String>,
    command_line: Option<String>,
    status: Option<&'static str>,
    sub_status: Option<&'static str>,
}

struct NetRow {
    ts: i64,
    computer: usize,
    action: &'static str,
    remote_ip: String,
    remote_port: i32,
    remote_url: Option<&'static str>,
    local_port: i32,
    protocol: &'static str,
    process: &'static str,
    account: Option<String>,
    command_line: Option<String>,
}

struct AuditRow {
    ts: i64,
    operation: &'static str,
    category: &'static str,
    result: &'static str,
    result_reason: &'static str,
    service: &'static str,
    initiated_by: String,
    targets: String,
    correlation: String,
    identity: String,
}

/// An account as Windows events name it.
#[derive(Clone, Copy)]
struct Who<'a> {
    domain: &'static str,
    name: &'a str,
    machine: bool,
}

impl<'a> Who<'a> {
    fn user(name: &'a str) -> Self {
        Who {
            domain: DOMAIN,
            name,
            machine: false,
        }
    }
    fn machine(name: &'a str) -> Self {
        Who {
            domain: DOMAIN,
            name,
            machine: true,
        }
    }
    fn system() -> Self {
        Who {
            domain: "NT AUTHORITY",
            name: "SYSTEM",
            machine: true,
        }
    }
    fn account(&self) -> String {
        format!("{}\\{}", self.domain, self.name)
    }
    fn kind(&self) -> &'static str {
        if self.machine {
            "Machine"
        } else {
            "User"
        }
    }
}

fn ev_logon(ts: i64, computer: usize, logon_type: i32, who: Who<'_>) -> SecRow {
    SecRow {
        ts,
        computer,
        event_id: 4624,
        account: Some(who.account()),
        account_type: Some(who.kind()),
        logon_type: Some(logon_type),
        target_user: Some(who.name.to_string()),
        target_domain: Some(who.domain),
        ..SecRow::default()
    }
}

fn ev_logoff(ts: i64, computer: usize, logon_type: i32, who: Who<'_>) -> SecRow {
    SecRow {
        event_id: 4634,
        ..ev_logon(ts, computer, logon_type, who)
    }
}

fn ev_failed(ts: i64, computer: usize, logon_type: i32, who: Who<'_>) -> SecRow {
    SecRow {
        event_id: 4625,
        status: Some("0xc000006d"),
        sub_status: Some("0xc000006a"),
        ..ev_logon(ts, computer, logon_type, who)
    }
}

fn ev_subject(ts: i64, computer: usize, event_id: i32, who: Who<'_>) -> SecRow {
    SecRow {
        ts,
        computer,
        event_id,
        account: Some(who.account()),
        account_type: Some(who.kind()),
        subject_user: Some(who.name.to_string()),
        ..SecRow::default()
    }
}

fn ev_privileges(ts: i64, computer: usize, who: Who<'_>) -> SecRow {
    ev_subject(ts, computer, 4672, who)
}

fn ev_process(ts: i64, computer: usize, who: Who<'_>, path: &str, cmd: &str) -> SecRow {
    SecRow {
        process: Some(path.to_string()),
        command_line: Some(cmd.to_string()),
        ..ev_subject(ts, computer, 4688, who)
    }
}

// ---------------------------------------------------------------------------------------------
// Simulation
// ---------------------------------------------------------------------------------------------

struct Sim<'w> {
    w: &'w World,
    rng: Rng,
    signins: Vec<SigninRow>,
    sec: Vec<SecRow>,
    net: Vec<NetRow>,
    audit: Vec<AuditRow>,
}

impl<'w> Sim<'w> {
    fn in_window(&self, ts: i64) -> bool {
        ts >= self.w.start && ts < self.w.end
    }

    fn push_signin(&mut self, row: SigninRow) {
        if self.in_window(row.ts) {
            self.signins.push(row);
        }
    }

    fn push_sec(&mut self, row: SecRow) {
        if self.in_window(row.ts) {
            self.sec.push(row);
        }
    }

    fn push_net(&mut self, row: NetRow) {
        if self.in_window(row.ts) {
            self.net.push(row);
        }
    }

    fn push_audit(&mut self, row: AuditRow) {
        if self.in_window(row.ts) {
            self.audit.push(row);
        }
    }

    /// Calendar days (UTC midnights) whose activity can fall into the window.
    fn days(&self) -> Vec<i64> {
        let first = self.w.start.div_euclid(DAY) * DAY - DAY;
        let mut days = Vec::new();
        let mut d = first;
        while d < self.w.end + DAY {
            days.push(d);
            d += DAY;
        }
        days
    }

    fn run(&mut self) {
        let days = self.days();
        for &day in &days {
            for u in 0..self.w.users.len() {
                self.user_day(u, day);
            }
            self.background_day(day);
            self.audit_day(day);
        }
    }

    // --- people --------------------------------------------------------------------------

    fn user_day(&mut self, u: usize, day: i64) {
        let w = self.w;
        let user = &w.users[u];
        let Some(city) = user.city else { return };
        if !user.enabled || user.service {
            return;
        }
        let workday = is_workday(day);
        if !self.rng.chance(if workday { 0.94 } else { 0.10 }) {
            return;
        }
        let local_midnight = day - city.tz_min * MIN;
        let r = &mut self.rng;
        let in_office = workday && !r.chance(user.remote_prob);
        let (start_min, len_min) = if workday {
            (7 * 60 + 15 + r.range(0, 135), 6 * 60 + 30 + r.range(0, 210))
        } else {
            (9 * 60 + r.range(0, 9 * 60), 20 + r.range(0, 140))
        };
        let day_start = local_midnight + start_min * MIN + r.range(0, 60) * SEC;
        let day_end = day_start + len_min * MIN;
        let egress = if in_office {
            city.office_ip
        } else {
            user.home_ip.as_str()
        };
        self.workstation_day(u, day_start, day_end, workday);
        self.signin_day(u, city, day_start, day_end, workday, egress);
    }

    fn workstation_day(&mut self, u: usize, day_start: i64, day_end: i64, workday: bool) {
        let w = self.w;
        let user = &w.users[u];
        let wks = user.wks;
        let c = &w.computers[wks];
        let who = Who::user(&user.sam);
        let machine = format!("{}$", c.name);
        let t0 = day_start - self.rng.range(MIN, 4 * MIN);

        if self.rng.chance(0.05) {
            let ts = t0 - self.rng.range(10 * SEC, 40 * SEC);
            self.push_sec(SecRow {
                ip: Some("127.0.0.1".into()),
                workstation: Some(c.name.clone()),
                subject_user: Some(machine.clone()),
                logon_process: Some("User32"),
                auth_package: Some("Negotiate"),
                process: Some(r"C:\Windows\System32\svchost.exe".into()),
                ..ev_failed(ts, wks, 2, who)
            });
        }
        self.push_sec(SecRow {
            ip: Some("127.0.0.1".into()),
            workstation: Some(c.name.clone()),
            subject_user: Some(machine.clone()),
            logon_process: Some("User32"),
            auth_package: Some("Negotiate"),
            process: Some(r"C:\Windows\System32\svchost.exe".into()),
            ..ev_logon(t0, wks, 2, who)
        });
        if user.admin {
            self.push_sec(ev_privileges(t0, wks, who));
        }
        for (i, (path, cmd)) in STARTUP_PROCESSES.iter().enumerate() {
            let ts = t0 + (3 + 15 * i as i64) * SEC + self.rng.range(0, 10 * SEC);
            self.push_sec(ev_process(ts, wks, who, path, cmd));
        }

        // Applications started through the day.
        let n_proc = self.rng.range(3, 11);
        for _ in 0..n_proc {
            let ts = self.rng.range(t0, day_end);
            let (path, cmd) = match (user.dept, self.rng.below(3)) {
                ("Engineering", 0) => *self.rng.pick(&ENGINEER_PROCESSES),
                ("IT", 0) => *self.rng.pick(&ADMIN_PROCESSES),
                _ => *self.rng.pick(&USER_PROCESSES),
            };
            let path = path.replace("{u}", &user.sam);
            let cmd = cmd.replace("{u}", &user.sam);
            self.push_sec(ev_process(ts, wks, who, &path, &cmd));
        }

        // Screen unlocks.
        for _ in 0..self.rng.below(4) {
            let ts = self.rng.range(t0 + HOUR, day_end);
            self.push_sec(SecRow {
                ip: Some("127.0.0.1".into()),
                workstation: Some(c.name.clone()),
                subject_user: Some(machine.clone()),
                logon_process: Some("User32"),
                auth_package: Some("Negotiate"),
                process: Some(r"C:\Windows\System32\svchost.exe".into()),
                ..ev_logon(ts, wks, 7, who)
            });
        }

        // Kerberos network logons on the domain controllers.
        for _ in 0..self.rng.range(2, 6) {
            let ts = self.rng.range(t0, day_end);
            let dc = *self.rng.pick(&w.dcs);
            self.kerberos_logon(ts, dc, wks, who);
            let port = if self.rng.chance(0.5) { 88 } else { 389 };
            self.connect(
                ts - SEC,
                wks,
                dc,
                port,
                "lsass.exe",
                "system",
                r"C:\Windows\system32\lsass.exe",
            );
        }

        // File server sessions.
        let sessions = if workday {
            self.rng.range(1, 4)
        } else {
            self.rng.range(0, 2)
        };
        for _ in 0..sessions {
            let ts = self.rng.range(t0, day_end);
            self.file_session(u, ts);
        }

        // Web and cloud traffic.
        let weights: Vec<u32> = USER_ENDPOINTS.iter().map(|e| e.weight).collect();
        for _ in 0..self.rng.range(6, 16) {
            let ts = self.rng.range(t0, day_end + 30 * MIN);
            let e = &USER_ENDPOINTS[self.rng.weighted(&weights)];
            let failed = self.rng.chance(0.02);
            self.outbound(ts, wks, e, &user.sam, failed);
        }
        let mut ts = t0 + self.rng.range(0, HOUR);
        while ts < day_end {
            self.outbound(ts, wks, &SYSTEM_ENDPOINTS[2], &user.sam, false);
            ts += self.rng.range(90 * MIN, 150 * MIN);
        }

        // Administrators work on servers over RDP.
        if user.admin && workday && self.rng.chance(0.4) {
            let servers: Vec<usize> = w.servers().collect();
            let server = *self.rng.pick(&servers);
            let ts = self.rng.range(t0 + HOUR, day_end - HOUR);
            self.admin_rdp(u, server, ts);
        }

        let off = day_end + self.rng.range(MIN, 10 * MIN);
        self.push_sec(ev_logoff(off, wks, 2, who));
    }

    fn kerberos_logon(&mut self, ts: i64, target: usize, source: usize, who: Who<'_>) {
        let src = &self.w.computers[source];
        self.push_sec(SecRow {
            ip: Some(src.ip.clone()),
            workstation: Some("-".into()),
            subject_user: Some("-".into()),
            logon_process: Some("Kerberos"),
            auth_package: Some("Kerberos"),
            process: Some("-".into()),
            ..ev_logon(ts, target, 3, who)
        });
        let off = ts + self.rng.range(SEC, 20 * SEC);
        self.push_sec(ev_logoff(off, target, 3, who));
    }

    fn file_session(&mut self, u: usize, ts: i64) {
        let w = self.w;
        let user = &w.users[u];
        let who = Who::user(&user.sam);
        let wks = user.wks;
        let fs = w.fs01;
        let ip = w.computers[wks].ip.clone();
        let share = match self.rng.below(10) {
            0..=3 => department_share(user.dept),
            4..=7 => SHARE_SHARED,
            _ => SHARE_USERS,
        };
        self.kerberos_logon(ts, fs, wks, who);
        self.connect(ts - SEC, wks, fs, 445, "ntoskrnl.exe", "system", "");
        self.push_sec(SecRow {
            ip: Some(ip.clone()),
            share: Some(share),
            ..ev_subject(ts + SEC, fs, 5140, who)
        });
        let mut t = ts + 2 * SEC;
        for _ in 0..self.rng.range(1, 6) {
            let object = if share == SHARE_FINANCE {
                self.rng.pick(&w.finance).clone()
            } else if share == SHARE_SHARED {
                (*self.rng.pick(&SHARED_FILES)).to_string()
            } else if share == SHARE_USERS {
                format!(
                    r"{}\Documents\Notes_{}.docx",
                    user.sam,
                    self.rng.range(1, 40)
                )
            } else {
                format!(
                    r"Team\Weekly_Update_2026-W{:02}.docx",
                    self.rng.range(30, 45)
                )
            };
            self.push_sec(SecRow {
                ip: Some(ip.clone()),
                share: Some(share),
                object: Some(object),
                ..ev_subject(t, fs, 5145, who)
            });
            t += self.rng.range(2 * SEC, 90 * SEC);
        }
    }

    fn admin_rdp(&mut self, u: usize, server: usize, ts: i64) {
        let w = self.w;
        let user = &w.users[u];
        let who = Who::user(&user.sam);
        let wks = user.wks;
        let (src, dst) = (&w.computers[wks], &w.computers[server]);
        let mstsc = r"C:\Windows\System32\mstsc.exe";
        self.push_sec(ev_process(
            ts - 20 * SEC,
            wks,
            who,
            mstsc,
            &format!("\"{mstsc}\" /v:{}", dst.name),
        ));
        self.push_sec(SecRow {
            ip: Some(dst.ip.clone()),
            target_user: Some(user.sam.clone()),
            target_domain: Some(DOMAIN),
            process: Some(r"C:\Windows\System32\lsass.exe".into()),
            ..ev_subject(ts - 5 * SEC, wks, 4648, who)
        });
        self.connect(
            ts - 2 * SEC,
            wks,
            server,
            3389,
            "mstsc.exe",
            &user.sam,
            &format!("\"mstsc.exe\" /v:{}", dst.name),
        );
        self.push_sec(SecRow {
            ip: Some(src.ip.clone()),
            workstation: Some(src.name.clone()),
            subject_user: Some(format!("{}$", dst.name)),
            logon_process: Some("User32"),
            auth_package: Some("Negotiate"),
            process: Some(r"C:\Windows\System32\svchost.exe".into()),
            ..ev_logon(ts, server, 10, who)
        });
        self.push_sec(ev_privileges(ts, server, who));
        let mut t = ts + MIN;
        for _ in 0..self.rng.range(1, 4) {
            let (path, cmd) = *self.rng.pick(&ADMIN_PROCESSES);
            self.push_sec(ev_process(t, server, who, path, cmd));
            t += self.rng.range(MIN, 10 * MIN);
        }
        let off = t + self.rng.range(5 * MIN, 40 * MIN);
        self.push_sec(ev_logoff(off, server, 10, who));
    }

    /// An outbound connection from `from` to an internal computer, and the inbound side.
    #[allow(clippy::too_many_arguments)]
    fn connect(
        &mut self,
        ts: i64,
        from: usize,
        to: usize,
        port: i32,
        process: &'static str,
        account: &str,
        cmd: &str,
    ) {
        let w = self.w;
        let local_port = self.rng.ephemeral_port();
        self.push_net(NetRow {
            ts,
            computer: from,
            action: "ConnectionSuccess",
            remote_ip: w.computers[to].ip.clone(),
            remote_port: port,
            remote_url: None,
            local_port,
            protocol: "Tcp",
            process,
            account: Some(account.to_string()),
            command_line: if cmd.is_empty() {
                None
            } else {
                Some(cmd.to_string())
            },
        });
        let (in_process, in_account, in_cmd) = match port {
            3389 => (
                "svchost.exe",
                "network service",
                Some("svchost.exe -k termsvcs -s TermService"),
            ),
            445 => ("ntoskrnl.exe", "system", None),
            _ => (
                "lsass.exe",
                "system",
                Some(r"C:\Windows\system32\lsass.exe"),
            ),
        };
        // Domain controllers see so much traffic that only a sample is kept, as in practice.
        if port != 445
            && port != 3389
            && w.computers[to].kind == Kind::DomainController
            && !self.rng.chance(0.3)
        {
            return;
        }
        self.push_net(NetRow {
            ts,
            computer: to,
            action: "InboundConnectionAccepted",
            remote_ip: w.computers[from].ip.clone(),
            remote_port: local_port,
            remote_url: None,
            local_port: port,
            protocol: "Tcp",
            process: in_process,
            account: Some(in_account.to_string()),
            command_line: in_cmd.map(str::to_string),
        });
    }

    fn outbound(&mut self, ts: i64, computer: usize, e: &Endpoint, user: &str, failed: bool) {
        let local_port = self.rng.ephemeral_port();
        self.push_net(NetRow {
            ts,
            computer,
            action: if failed {
                "ConnectionFailed"
            } else {
                "ConnectionSuccess"
            },
            remote_ip: e.ip.to_string(),
            remote_port: e.port,
            remote_url: Some(e.url),
            local_port,
            protocol: "Tcp",
            process: e.process,
            account: Some(e.account.unwrap_or(user).to_string()),
            command_line: Some(e.cmd.to_string()),
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn signin_day(
        &mut self,
        u: usize,
        city: &'static HomeCity,
        day_start: i64,
        day_end: i64,
        workday: bool,
        egress: &str,
    ) {
        let w = self.w;
        let user = &w.users[u];
        let n = if workday {
            3 + user.extra_signins + self.rng.below(4)
        } else {
            1 + self.rng.below(2)
        };
        let mut times = Vec::with_capacity(n as usize);
        times.push(day_start + self.rng.range(0, 5 * MIN));
        for _ in 1..n {
            times.push(self.rng.range(day_start, day_end + 2 * HOUR));
        }
        times.sort_unstable();
        let lockout_day = self.rng.chance(0.002);
        for (i, &ts) in times.iter().enumerate() {
            let after_hours = ts > day_end;
            let mobile = user
                .mobile
                .filter(|_| after_hours || self.rng.chance(if workday { 0.15 } else { 0.5 }));
            let (app, ip, ua, device, client) = match mobile {
                Some(os) => {
                    let app = if self.rng.chance(0.6) {
                        &APP_OUTLOOK_MOBILE
                    } else {
                        &APPS[APP_TEAMS]
                    };
                    let ip = if egress == city.office_ip && !after_hours {
                        egress.to_string()
                    } else {
                        format!(
                            "{}.{}.{}",
                            city.mobile,
                            self.rng.range(1, 255),
                            self.rng.range(1, 255)
                        )
                    };
                    let (ua, device) = match os {
                        MobileOs::Ios => (
                            UA_IOS,
                            r#"{"deviceId":"","operatingSystem":"Ios 18.0","browser":"Mobile Safari","isCompliant":false,"isManaged":false}"#,
                        ),
                        MobileOs::Android => (
                            UA_ANDROID,
                            r#"{"deviceId":"","operatingSystem":"Android 14","browser":"Chrome Mobile 130.0.0","isCompliant":false,"isManaged":false}"#,
                        ),
                    };
                    (app, ip, ua, device.to_string(), CLIENT_MODERN)
                }
                None => {
                    let weights: Vec<u32> = APPS
                        .iter()
                        .map(|a| {
                            if a.technical && !matches!(user.dept, "IT" | "Engineering") {
                                0
                            } else {
                                a.weight
                            }
                        })
                        .collect();
                    let app = &APPS[self.rng.weighted(&weights)];
                    let ip = if after_hours {
                        user.home_ip.clone()
                    } else {
                        egress.to_string()
                    };
                    let c = &w.computers[user.wks];
                    let (ua, browser, client) = match app.kind {
                        AppKind::Browser => {
                            if self.rng.chance(0.8) {
                                (UA_EDGE, "Edge 130.0.0", CLIENT_BROWSER)
                            } else {
                                (UA_CHROME, "Chrome 130.0.0", CLIENT_BROWSER)
                            }
                        }
                        _ => (UA_DESKTOP, "Rich Client 5.2.4.0", CLIENT_MODERN),
                    };
                    let device = format!(
                        r#"{{"deviceId":"{}","displayName":"{}","operatingSystem":"Windows10","browser":"{}","isCompliant":true,"isManaged":true,"trustType":"Hybrid Azure AD joined"}}"#,
                        c.aad_id, c.name, browser
                    );
                    (app, ip, ua, device, client)
                }
            };
            let first = i == 0;
            let auth = if first || (mobile.is_some() && self.rng.chance(0.3)) {
                MFA
            } else {
                SFA
            };
            let interactive = first || app.kind == AppKind::Browser || !self.rng.chance(0.2);
            let risk = if self.rng.chance(0.004) {
                "low"
            } else {
                "none"
            };
            let place = &city.place;
            let row =
                |rng: &mut Rng, ts: i64, result: &'static str, ca: &'static str, auth| SigninRow {
                    ts,
                    user: u,
                    app,
                    ip: ip.clone(),
                    place,
                    result,
                    client,
                    user_agent: ua,
                    device: device.clone(),
                    ca_status: ca,
                    risk,
                    interactive,
                    auth,
                    correlation: rng.guid(),
                };

            if first && lockout_day {
                for k in 0..4 {
                    let r = row(
                        &mut self.rng,
                        ts - (20 - 2 * k) * MIN,
                        "50126",
                        "notApplied",
                        SFA,
                    );
                    self.push_signin(r);
                }
                let r = row(&mut self.rng, ts - 12 * MIN, "50053", "notApplied", SFA);
                self.push_signin(r);
                self.audit_self_service_reset(u, ts - 5 * MIN, ip.clone());
            } else if self.rng.chance(0.02) {
                let t = ts - self.rng.range(30 * SEC, 90 * SEC);
                let r = row(&mut self.rng, t, "50126", "notApplied", SFA);
                self.push_signin(r);
            }
            if first && self.rng.chance(0.25) {
                let r = row(&mut self.rng, ts - 40 * SEC, "50074", "notApplied", SFA);
                self.push_signin(r);
            }
            if client == CLIENT_BROWSER && self.rng.chance(0.01) {
                let r = row(&mut self.rng, ts - 10 * SEC, "50140", "notApplied", auth);
                self.push_signin(r);
            }
            let r = if mobile.is_some() && self.rng.chance(0.005) {
                row(&mut self.rng, ts, "53003", "failure", auth)
            } else {
                row(&mut self.rng, ts, "0", "success", auth)
            };
            self.push_signin(r);
        }
    }

    // --- machines ------------------------------------------------------------------------

    fn background_day(&mut self, day: i64) {
        let w = self.w;
        let servers: Vec<usize> = w.servers().collect();
        let sys_weights: Vec<u32> = SYSTEM_ENDPOINTS.iter().map(|e| e.weight).collect();
        for &s in &servers {
            let name = &w.computers[s].name;
            let machine = format!("{name}$");
            for h in 0..24 {
                let hour = day + h * HOUR;
                let ts = hour + self.rng.range(0, HOUR);
                self.service_logon(ts, s);
                for _ in 0..self.rng.below(3) {
                    let (path, cmd) = *self.rng.pick(&SERVER_PROCESSES);
                    let t = hour + self.rng.range(0, HOUR);
                    self.push_sec(ev_process(t, s, Who::machine(&machine), path, cmd));
                }
                let e = &SYSTEM_ENDPOINTS[self.rng.weighted(&sys_weights)];
                let t = hour + self.rng.range(0, HOUR);
                self.outbound(t, s, e, "system", false);
            }
        }

        // Workstations: service logons and machine-account Kerberos logons.
        for wks in 0..w.computers.len() {
            if w.computers[wks].kind != Kind::Workstation {
                continue;
            }
            let machine = format!("{}$", w.computers[wks].name);
            for _ in 0..2 {
                let ts = day + self.rng.range(0, DAY);
                self.service_logon(ts, wks);
            }
            for _ in 0..3 {
                let ts = day + self.rng.range(0, DAY);
                let dc = *self.rng.pick(&w.dcs);
                self.kerberos_logon(ts, dc, wks, Who::machine(&machine));
            }
        }

        // The backup service account's nightly job: a service logon on SRV-BKP01 and a
        // network logon from there to SRV-SQL01.
        let svc = Who::user(&w.users[U_SVC].sam);
        let ts = day + HOUR + self.rng.range(0, 5 * MIN);
        let bkp = &w.computers[w.bkp01];
        self.push_sec(SecRow {
            ip: Some("-".into()),
            workstation: Some("-".into()),
            subject_user: Some(format!("{}$", bkp.name)),
            logon_process: Some("Advapi"),
            auth_package: Some("Negotiate"),
            process: Some(r"C:\Windows\System32\services.exe".into()),
            ..ev_logon(ts, w.bkp01, 5, svc)
        });
        self.push_sec(ev_privileges(ts, w.bkp01, svc));
        let t = ts + self.rng.range(30 * SEC, 2 * MIN);
        self.push_sec(SecRow {
            ip: Some(bkp.ip.clone()),
            workstation: Some("-".into()),
            subject_user: Some("-".into()),
            logon_process: Some("Kerberos"),
            auth_package: Some("Kerberos"),
            process: Some("-".into()),
            ..ev_logon(t, w.sql01, 3, svc)
        });
        self.push_sec(ev_privileges(t, w.sql01, svc));
        self.connect(
            t - SEC,
            w.bkp01,
            w.sql01,
            1433,
            "ContosoBackup.exe",
            "svc-sqlbackup",
            r#""C:\Program Files\Contoso\Backup\ContosoBackup.exe" --job nightly-sql"#,
        );
        let done = t + self.rng.range(25 * MIN, 55 * MIN);
        self.push_sec(ev_logoff(done, w.sql01, 3, svc));
    }

    fn service_logon(&mut self, ts: i64, computer: usize) {
        let name = &self.w.computers[computer].name;
        self.push_sec(SecRow {
            ip: Some("-".into()),
            workstation: Some("-".into()),
            subject_user: Some(format!("{name}$")),
            logon_process: Some("Advapi"),
            auth_package: Some("Negotiate"),
            process: Some(r"C:\Windows\System32\services.exe".into()),
            ..ev_logon(ts, computer, 5, Who::system())
        });
        self.push_sec(ev_privileges(ts, computer, Who::system()));
    }

    // --- directory audit -----------------------------------------------------------------

    fn user_initiator(&self, u: usize, ip: &str) -> String {
        let user = &self.w.users[u];
        format!(
            r#"{{"user":{{"id":"{}","displayName":null,"userPrincipalName":"{}","ipAddress":"{}","roles":[]}}}}"#,
            user.id, user.upn, ip
        )
    }

    fn app_initiator(&mut self, name: &str) -> String {
        format!(
            r#"{{"app":{{"appId":null,"displayName":"{}","servicePrincipalId":"{}","servicePrincipalName":null}}}}"#,
            json_escape(name),
            self.rng.guid()
        )
    }

    fn user_target(&self, u: usize, property: &str, old: &str, new: &str) -> String {
        let user = &self.w.users[u];
        format!(
            r#"[{{"id":"{}","displayName":null,"type":"User","userPrincipalName":"{}","modifiedProperties":[{{"displayName":"{}","oldValue":"{}","newValue":"{}"}}]}}]"#,
            user.id,
            user.upn,
            json_escape(property),
            json_escape(old),
            json_escape(new)
        )
    }

    fn random_person(&mut self) -> usize {
        // Background audit events leave the incident actors alone.
        loop {
            let u = self.rng.range(U_SVC as i64 + 1, self.w.users.len() as i64) as usize;
            if self.w.users[u].enabled {
                return u;
            }
        }
    }

    fn audit_self_service_reset(&mut self, u: usize, ts: i64, ip: String) {
        let initiated_by = self.user_initiator(u, &ip);
        let targets = self.user_target(u, "PasswordChanged", "", "true");
        let correlation = self.rng.guid();
        self.push_audit(AuditRow {
            ts,
            operation: "Reset password (self-service)",
            category: "UserManagement",
            result: "success",
            result_reason: "User successfully reset password",
            service: "Self-service Password Management",
            initiated_by,
            targets,
            correlation,
            identity: self.w.users[u].display.clone(),
        });
    }

    fn audit_day(&mut self, day: i64) {
        let w = self.w;
        let workday = is_workday(day);
        let seattle = CITIES[SEATTLE].tz_min * MIN;

        // Directory synchronisation every 30 minutes.
        for slot in 0..48 {
            let cycle = day + slot * 30 * MIN + self.rng.range(0, 90 * SEC);
            for _ in 0..self.rng.below(if workday { 3 } else { 2 }) {
                let u = self.random_person();
                let (prop, old, new) = *self.rng.pick(&[
                    (
                        "LastDirSyncTime",
                        "[\"2026-10-01T00:00:00Z\"]",
                        "[\"2026-10-02T00:00:00Z\"]",
                    ),
                    (
                        "TelephoneNumber",
                        "[\"+1 206 555 0100\"]",
                        "[\"+1 206 555 0199\"]",
                    ),
                    ("Manager", "[]", "[\"Manager changed\"]"),
                    ("JobTitle", "[]", "[\"Title changed\"]"),
                ]);
                let targets = self.user_target(u, prop, old, new);
                let correlation = self.rng.guid();
                let ts = cycle + self.rng.range(0, 30 * SEC);
                self.push_audit(AuditRow {
                    ts,
                    operation: "Update user",
                    category: "UserManagement",
                    result: "success",
                    result_reason: "",
                    service: "Core Directory",
                    initiated_by: r#"{"user":{"id":"0b9f2c1d-7b44-4e3a-9f1c-3a9f2c1d7b44","displayName":null,"userPrincipalName":"Sync_DC01_3a9f2c1d7b44@contoso.onmicrosoft.com","ipAddress":null,"roles":[]}}"#.to_string(),
                    targets,
                    correlation,
                    identity: "On-Premises Directory Synchronization Service Account".to_string(),
                });
            }
        }

        // Token revocations by Microsoft's own services.
        for _ in 0..self.rng.range(2, 7) {
            let u = self.random_person();
            let initiated_by = self.app_initiator("Microsoft Substrate Management");
            let targets = self.user_target(u, "StsRefreshTokensValidFrom", "", "");
            let correlation = self.rng.guid();
            let ts = day + self.rng.range(0, DAY);
            self.push_audit(AuditRow {
                ts,
                operation: "Update user",
                category: "UserManagement",
                result: "success",
                result_reason: "",
                service: "Core Directory",
                initiated_by,
                targets,
                correlation,
                identity: "Microsoft Substrate Management".to_string(),
            });
        }

        if !workday {
            return;
        }
        let office = |rng: &mut Rng| day - seattle + rng.range(8 * HOUR, 18 * HOUR);

        // Group membership changes by the IT administrators.
        let groups = [
            "Sales Team",
            "VPN Users",
            "Engineering",
            "All Company",
            "M365-E5-Licensed",
            "Finance-FileShare-RW",
            "Project Falcon",
        ];
        for _ in 0..self.rng.range(1, 6) {
            let admin = self.rng.range(0, 2) as usize;
            let u = self.random_person();
            let group = *self.rng.pick(&groups);
            // Only finance people are ever added to the Finance share group.
            if group == "Finance-FileShare-RW" && w.users[u].dept != "Finance" {
                continue;
            }
            let add = self.rng.chance(0.75);
            let initiated_by = self.user_initiator(admin, CITIES[SEATTLE].office_ip);
            let targets = format!(
                r#"[{{"id":"{}","displayName":null,"type":"User","userPrincipalName":"{}","modifiedProperties":[{{"displayName":"Group.DisplayName","oldValue":null,"newValue":"\"{}\""}}]}},{{"id":"{}","displayName":"{}","type":"Group","userPrincipalName":null,"modifiedProperties":[]}}]"#,
                w.users[u].id,
                w.users[u].upn,
                group,
                self.rng.guid(),
                group
            );
            let correlation = self.rng.guid();
            let ts = office(&mut self.rng);
            self.push_audit(AuditRow {
                ts,
                operation: if add {
                    "Add member to group"
                } else {
                    "Remove member from group"
                },
                category: "GroupManagement",
                result: "success",
                result_reason: "",
                service: "Core Directory",
                initiated_by,
                targets,
                correlation,
                identity: w.users[admin].display.clone(),
            });
        }

        // People change passwords and register authentication methods.
        for _ in 0..self.rng.range(0, 3) {
            let u = self.random_person();
            let ip = w.users[u].home_ip.clone();
            let initiated_by = self.user_initiator(u, &ip);
            let (op, service, reason, targets) = if self.rng.chance(0.5) {
                (
                    "Change user password",
                    "Core Directory",
                    "",
                    self.user_target(u, "PasswordChanged", "", "true"),
                )
            } else {
                (
                    "User registered security info",
                    "Authentication Methods",
                    "User registered Authenticator App with Notification and Code",
                    self.user_target(
                        u,
                        "StrongAuthenticationMethod",
                        "[]",
                        "[{\"MethodType\":6,\"Default\":true}]",
                    ),
                )
            };
            let correlation = self.rng.guid();
            let ts = office(&mut self.rng);
            self.push_audit(AuditRow {
                ts,
                operation: op,
                category: "UserManagement",
                result: "success",
                result_reason: reason,
                service,
                initiated_by,
                targets,
                correlation,
                identity: w.users[u].display.clone(),
            });
        }

        // Devices registered, app access granted, the occasional failure.
        if self.rng.chance(0.5) {
            let u = self.random_person();
            let initiated_by = self.app_initiator("Device Registration Service");
            let correlation = self.rng.guid();
            let targets = format!(
                r#"[{{"id":"{}","displayName":"{}-PHONE","type":"Device","userPrincipalName":null,"modifiedProperties":[]}}]"#,
                self.rng.guid(),
                w.users[u].sam.to_uppercase()
            );
            let ts = office(&mut self.rng);
            self.push_audit(AuditRow {
                ts,
                operation: "Add device",
                category: "Device",
                result: "success",
                result_reason: "",
                service: "Core Directory",
                initiated_by,
                targets,
                correlation,
                identity: "Device Registration Service".to_string(),
            });
        }
        for _ in 0..self.rng.below(3) {
            let u = self.random_person();
            let app = *self.rng.pick(&[
                "Salesforce",
                "ServiceNow",
                "Workday",
                "Zoom",
                "Adobe Acrobat Sign",
            ]);
            let failed = self.rng.chance(0.05);
            let initiated_by = self.user_initiator(U_LEE, CITIES[SEATTLE].office_ip);
            let targets = format!(
                r#"[{{"id":"{}","displayName":null,"type":"User","userPrincipalName":"{}","modifiedProperties":[]}},{{"id":"{}","displayName":"{}","type":"ServicePrincipal","userPrincipalName":null,"modifiedProperties":[]}}]"#,
                w.users[u].id,
                w.users[u].upn,
                self.rng.guid(),
                app
            );
            let correlation = self.rng.guid();
            let ts = office(&mut self.rng);
            self.push_audit(AuditRow {
                ts,
                operation: "Add app role assignment grant to user",
                category: "ApplicationManagement",
                result: if failed { "failure" } else { "success" },
                result_reason: if failed {
                    "Microsoft.Online.Workflows.ObjectAlreadyExistsException"
                } else {
                    ""
                },
                service: "Core Directory",
                initiated_by,
                targets,
                correlation,
                identity: w.users[U_LEE].display.clone(),
            });
        }
        if self.rng.chance(0.08) {
            let initiated_by = self.user_initiator(U_LEE, CITIES[SEATTLE].office_ip);
            let correlation = self.rng.guid();
            let targets = format!(
                r#"[{{"id":"{}","displayName":"Require MFA for all users","type":"Policy","userPrincipalName":null,"modifiedProperties":[]}}]"#,
                self.rng.guid()
            );
            let ts = office(&mut self.rng);
            self.push_audit(AuditRow {
                ts,
                operation: "Update conditional access policy",
                category: "Policy",
                result: "success",
                result_reason: "",
                service: "Conditional Access",
                initiated_by,
                targets,
                correlation,
                identity: w.users[U_LEE].display.clone(),
            });
        }
    }

    // --- incidents -----------------------------------------------------------------------

    fn incidents(&mut self) {
        self.password_spray();
        self.brute_force();
        self.impossible_travel();
        self.lateral_movement();
        self.finance_share();
    }

    fn attacker_signin(
        &mut self,
        ts: i64,
        u: usize,
        app: &'static App,
        result: &'static str,
    ) -> SigninRow {
        SigninRow {
            ts,
            user: u,
            app,
            ip: String::new(),
            place: &PLACE_SPRAY,
            result,
            client: CLIENT_BROWSER,
            user_agent: UA_FIREFOX,
            device: r#"{"deviceId":"","operatingSystem":"Windows10","browser":"Firefox 128.0"}"#
                .to_string(),
            ca_status: "notApplied",
            risk: "none",
            interactive: true,
            auth: SFA,
            correlation: self.rng.guid(),
        }
    }

    fn password_spray(&mut self) {
        let w = self.w;
        let start = w.incident_at(SPRAY_OFFSET);
        let mut candidates: Vec<usize> = (0..w.users.len())
            .filter(|&u| u != U_LYNNE && w.users[u].enabled && !w.users[u].service)
            .collect();
        // Fisher-Yates, then the first 59 and Lynne somewhere among them.
        for i in (1..candidates.len()).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            candidates.swap(i, j);
        }
        candidates.truncate(59);
        let at = self.rng.below(60) as usize;
        candidates.insert(at, U_LYNNE);
        for (i, &u) in candidates.iter().enumerate() {
            let ts = start + i as i64 * 47 * SEC + self.rng.range(0, 20 * SEC);
            let success = u == U_LYNNE;
            let row = self.attacker_signin(
                ts,
                u,
                &APPS[APP_EXCHANGE],
                if success { "0" } else { "50126" },
            );
            self.push_signin(SigninRow {
                ip: SPRAY_IP.to_string(),
                place: &PLACE_SPRAY,
                client: CLIENT_OTHER,
                user_agent: UA_ROPC,
                device: r#"{"deviceId":"","operatingSystem":"","browser":""}"#.to_string(),
                risk: if success { "medium" } else { "none" },
                ..row
            });
        }
    }

    fn brute_force(&mut self) {
        let w = self.w;
        let start = w.incident_at(BRUTE_OFFSET);
        for i in 0..36 {
            let ts = start + i * 30 * SEC + self.rng.range(0, 10 * SEC);
            let row = self.attacker_signin(ts, U_MEGAN, &APPS[APP_OFFICEHOME], "50126");
            self.push_signin(SigninRow {
                ip: BRUTE_IP.to_string(),
                place: &PLACE_BRUTE,
                ..row
            });
        }
        for (offset, app) in [
            (19, &APPS[APP_OFFICEHOME]),
            (22, &APPS[APP_EXCHANGE]),
            (24, &APP_MY_SIGNINS),
        ] {
            let row = self.attacker_signin(start + offset * MIN + 12 * SEC, U_MEGAN, app, "0");
            self.push_signin(SigninRow {
                ip: BRUTE_IP.to_string(),
                place: &PLACE_BRUTE,
                risk: "high",
                ..row
            });
        }
        // The attacker registers their own authenticator.
        let correlation = self.rng.guid();
        for (offset, op, reason) in [
            (
                25,
                "User started security info registration",
                "User started the registration for Authenticator App with Notification and Code",
            ),
            (
                26,
                "User registered security info",
                "User registered Authenticator App with Notification and Code",
            ),
        ] {
            let initiated_by = self.user_initiator(U_MEGAN, BRUTE_IP);
            let targets = self.user_target(
                U_MEGAN,
                "StrongAuthenticationMethod",
                "[]",
                "[{\"MethodType\":6,\"Default\":true}]",
            );
            self.push_audit(AuditRow {
                ts: start + offset * MIN + 5 * SEC,
                operation: op,
                category: "UserManagement",
                result: "success",
                result_reason: reason,
                service: "Authentication Methods",
                initiated_by,
                targets,
                correlation: correlation.clone(),
                identity: w.users[U_MEGAN].display.clone(),
            });
        }
    }

    fn impossible_travel(&mut self) {
        let w = self.w;
        let start = w.incident_at(TRAVEL_OFFSET);
        let alex = &w.users[U_ALEX];
        let c = &w.computers[alex.wks];
        let home = self.attacker_signin(start, U_ALEX, &APPS[APP_TEAMS], "0");
        self.push_signin(SigninRow {
            ip: alex.home_ip.clone(),
            place: &CITIES[SEATTLE].place,
            client: CLIENT_MODERN,
            user_agent: UA_DESKTOP,
            device: format!(
                r#"{{"deviceId":"{}","displayName":"{}","operatingSystem":"Windows10","browser":"Rich Client 5.2.4.0","isCompliant":true,"isManaged":true,"trustType":"Hybrid Azure AD joined"}}"#,
                c.aad_id, c.name
            ),
            ca_status: "success",
            auth: MFA,
            ..home
        });
        for (offset, app) in [(40, &APPS[APP_EXCHANGE]), (44, &APPS[APP_SHAREPOINT])] {
            let row = self.attacker_signin(start + offset * MIN, U_ALEX, app, "0");
            self.push_signin(SigninRow {
                ip: TRAVEL_IP.to_string(),
                place: &PLACE_TRAVEL,
                user_agent: UA_CHROME,
                device:
                    r#"{"deviceId":"","operatingSystem":"Windows10","browser":"Chrome 130.0.0"}"#
                        .to_string(),
                ca_status: "success",
                risk: "medium",
                ..row
            });
        }
    }

    fn lateral_movement(&mut self) {
        let w = self.w;
        let t = w.incident_at(LATERAL_OFFSET);
        let nestor = &w.users[U_NESTOR];
        let wks = nestor.wks;
        let src = &w.computers[wks];
        let me = Who::user(&nestor.sam);
        let svc = Who::user(&w.users[U_SVC].sam);
        let ps = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe";
        let ps_cmd = "powershell.exe -nop -w hidden -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcAZQBiAEMAbABpAGUAbgB0ACkA";

        // Foothold: encoded PowerShell fetches a tool, which dumps LSASS.
        self.push_sec(ev_process(t - 12 * MIN, wks, me, ps, ps_cmd));
        let lp = self.rng.ephemeral_port();
        self.push_net(NetRow {
            ts: t - 12 * MIN + 4 * SEC,
            computer: wks,
            action: "ConnectionSuccess",
            remote_ip: PAYLOAD_IP.to_string(),
            remote_port: 443,
            remote_url: None,
            local_port: lp,
            protocol: "Tcp",
            process: "powershell.exe",
            account: Some(nestor.sam.clone()),
            command_line: Some(ps_cmd.to_string()),
        });
        self.push_sec(ev_process(
            t - 9 * MIN,
            wks,
            me,
            r"C:\Users\Public\pd64.exe",
            r"C:\Users\Public\pd64.exe -accepteula -ma lsass.exe C:\Users\Public\lsass.dmp",
        ));

        // Probing WinRM, which is closed.
        for (i, &s) in [w.sql01, w.bkp01, w.app01].iter().enumerate() {
            let lp = self.rng.ephemeral_port();
            self.push_net(NetRow {
                ts: t - MIN + i as i64 * 3 * SEC,
                computer: wks,
                action: "ConnectionFailed",
                remote_ip: w.computers[s].ip.clone(),
                remote_port: 5985,
                remote_url: None,
                local_port: lp,
                protocol: "Tcp",
                process: "powershell.exe",
                account: Some(nestor.sam.clone()),
                command_line: Some(ps_cmd.to_string()),
            });
        }

        let hops: [(usize, i32, i64, &str, &str); 5] = [
            (
                w.app01,
                3,
                2,
                r"C:\Windows\System32\cmd.exe",
                "cmd.exe /c whoami /all",
            ),
            (
                w.sql01,
                3,
                9,
                r"C:\Windows\System32\cmd.exe",
                r#"cmd.exe /c net group "Domain Admins" /domain"#,
            ),
            (
                w.web01,
                3,
                17,
                r"C:\Windows\System32\nltest.exe",
                "nltest.exe /dclist:contoso.com",
            ),
            (
                w.dcs[0],
                3,
                26,
                r"C:\Windows\System32\ntdsutil.exe",
                r#"ntdsutil.exe "ac i ntds" ifm "create full C:\Windows\Temp\ifm" q q"#,
            ),
            (
                w.app02,
                10,
                34,
                ps,
                r"powershell.exe -c Compress-Archive -Path \\DC01\C$\Windows\Temp\ifm -DestinationPath C:\Windows\Temp\ifm.zip",
            ),
        ];
        for (server, logon_type, minute, path, cmd) in hops {
            let ts = t + minute * MIN;
            let dst = &w.computers[server];
            let (tool, tool_cmd, port) = if logon_type == 10 {
                (
                    r"C:\Windows\System32\mstsc.exe",
                    format!("mstsc.exe /v:{}", dst.name),
                    3389,
                )
            } else {
                (ps, ps_cmd.to_string(), 445)
            };
            self.push_sec(SecRow {
                ip: Some(dst.ip.clone()),
                target_user: Some(svc.name.to_string()),
                target_domain: Some(DOMAIN),
                process: Some(tool.to_string()),
                ..ev_subject(ts - 20 * SEC, wks, 4648, me)
            });
            let (process, account) = if port == 3389 {
                ("mstsc.exe", nestor.sam.as_str())
            } else {
                ("powershell.exe", nestor.sam.as_str())
            };
            self.connect(ts - 5 * SEC, wks, server, port, process, account, &tool_cmd);
            let (lproc, pkg) = if logon_type == 10 {
                ("User32", "Negotiate")
            } else {
                ("NtLmSsp", "NTLM")
            };
            self.push_sec(SecRow {
                ip: Some(src.ip.clone()),
                workstation: Some(src.name.clone()),
                subject_user: Some(if logon_type == 10 {
                    format!("{}$", dst.name)
                } else {
                    "-".to_string()
                }),
                logon_process: Some(lproc),
                auth_package: Some(pkg),
                process: Some(if logon_type == 10 {
                    r"C:\Windows\System32\svchost.exe".to_string()
                } else {
                    "-".to_string()
                }),
                ..ev_logon(ts, server, logon_type, svc)
            });
            self.push_sec(ev_privileges(ts, server, svc));
            self.push_sec(ev_process(ts + 40 * SEC, server, svc, path, cmd));
            let end = ts
                + if logon_type == 10 {
                    21 * MIN
                } else {
                    self.rng.range(3 * MIN, 6 * MIN)
                };
            self.push_sec(ev_logoff(end, server, logon_type, svc));
        }
    }

    fn finance_share(&mut self) {
        let w = self.w;
        let t = w.incident_at(FINANCE_OFFSET);
        let joni = &w.users[U_JONI];
        let who = Who::user(&joni.sam);
        let wks = joni.wks;
        let ip = w.computers[wks].ip.clone();
        let robocopy = r"C:\Windows\System32\Robocopy.exe";
        let cmd = format!(
            r#"robocopy.exe \\FS01\Finance "C:\Users\{}\OneDrive - Contoso\Documents\fin" /E /R:0 /W:0"#,
            joni.sam
        );
        self.push_sec(ev_process(t - 30 * SEC, wks, who, robocopy, &cmd));
        self.kerberos_logon(t - 2 * SEC, w.fs01, wks, who);
        self.connect(t - 3 * SEC, wks, w.fs01, 445, "ntoskrnl.exe", "system", "");
        self.push_sec(SecRow {
            ip: Some(ip.clone()),
            share: Some(SHARE_FINANCE),
            ..ev_subject(t, w.fs01, 5140, who)
        });
        let files = w.finance.clone();
        let step = (27 * MIN) / files.len() as i64;
        for (i, f) in files.into_iter().enumerate() {
            let ts = t + SEC + i as i64 * step + self.rng.range(0, step / 2);
            self.push_sec(SecRow {
                ip: Some(ip.clone()),
                share: Some(SHARE_FINANCE),
                object: Some(f),
                ..ev_subject(ts, w.fs01, 5145, who)
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Arrow
// ---------------------------------------------------------------------------------------------

const BATCH_ROWS: usize = 65_536;

struct TableData {
    name: &'static str,
    description: &'static str,
    rows: usize,
    batches: Vec<RecordBatch>,
}

fn ts_field() -> Field {
    Field::new(
        "TimeGenerated",
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        false,
    )
}

fn utf8(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

fn ts_col(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from_iter_values(values).with_timezone("UTC"))
}

fn str_col<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn opt_col<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(values))
}

fn int_col(values: impl Iterator<Item = Option<i32>>) -> ArrayRef {
    Arc::new(Int32Array::from_iter(values))
}

fn batches<R>(
    table: &'static str,
    schema: &SchemaRef,
    rows: &[R],
    columns: impl Fn(&[R]) -> Vec<ArrayRef>,
) -> Result<Vec<RecordBatch>, DemoError> {
    rows.chunks(BATCH_ROWS)
        .map(|chunk| {
            RecordBatch::try_new(Arc::clone(schema), columns(chunk)).map_err(|source| {
                DemoError::BuildBatch {
                    table: table.to_string(),
                    source,
                }
            })
        })
        .collect()
}

fn build_tables(opts: &DemoOptions) -> Result<Vec<TableData>, DemoError> {
    let w = World::build(opts);
    let mut sim = Sim {
        w: &w,
        rng: Rng::new(opts.seed, 2),
        signins: Vec::new(),
        sec: Vec::new(),
        net: Vec::new(),
        audit: Vec::new(),
    };
    sim.run();
    sim.rng = Rng::new(opts.seed, 3);
    sim.incidents();
    let Sim {
        mut signins,
        mut sec,
        mut net,
        mut audit,
        ..
    } = sim;
    // Stable sorts: ties keep generation order, so the output is fully deterministic.
    signins.sort_by_key(|r| r.ts);
    sec.sort_by_key(|r| r.ts);
    net.sort_by_key(|r| r.ts);
    audit.sort_by_key(|r| r.ts);

    Ok(vec![
        identity_info(&w)?,
        signin_logs(&w, &signins)?,
        audit_logs(&audit)?,
        security_event(&w, &sec)?,
        device_network_events(&w, &net)?,
    ])
}

fn identity_info(w: &World) -> Result<TableData, DemoError> {
    const NAME: &str = "IdentityInfo";
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        ts_field(),
        utf8("AccountUPN", false),
        utf8("AccountName", false),
        utf8("AccountDisplayName", true),
        utf8("Department", true),
        utf8("JobTitle", true),
        utf8("Country", true),
        utf8("City", true),
        Field::new("IsAccountEnabled", DataType::Boolean, true),
        utf8("Type", false),
    ]));
    // One snapshot of the directory, taken at the start of the window.
    let rows: Vec<(i64, &User)> = w
        .users
        .iter()
        .enumerate()
        .map(|(i, u)| (w.start + 2 * HOUR + i as i64 * SEC, u))
        .collect();
    let batches = batches(NAME, &schema, &rows, |c| {
        vec![
            ts_col(c.iter().map(|r| r.0)),
            str_col(c.iter().map(|r| r.1.upn.as_str())),
            str_col(c.iter().map(|r| r.1.sam.as_str())),
            opt_col(c.iter().map(|r| Some(r.1.display.as_str()))),
            opt_col(c.iter().map(|r| Some(r.1.dept))),
            opt_col(c.iter().map(|r| r.1.title)),
            opt_col(c.iter().map(|r| r.1.city.map(|c| c.place.country))),
            opt_col(c.iter().map(|r| r.1.city.map(|c| c.place.city))),
            Arc::new(BooleanArray::from_iter(c.iter().map(|r| Some(r.1.enabled)))),
            str_col(c.iter().map(|_| NAME)),
        ]
    })?;
    Ok(TableData {
        name: NAME,
        description: "Demo: directory snapshot of contoso.com accounts",
        rows: rows.len(),
        batches,
    })
}

fn signin_logs(w: &World, rows: &[SigninRow]) -> Result<TableData, DemoError> {
    const NAME: &str = "SigninLogs";
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        ts_field(),
        utf8("TenantId", false),
        utf8("UserPrincipalName", false),
        utf8("UserDisplayName", true),
        utf8("UserId", false),
        utf8("AppDisplayName", true),
        utf8("AppId", true),
        utf8("IPAddress", true),
        utf8("Location", true),
        utf8("LocationDetails", true),
        utf8("ResultType", false),
        utf8("ResultDescription", true),
        utf8("ClientAppUsed", true),
        utf8("UserAgent", true),
        utf8("DeviceDetail", true),
        utf8("ConditionalAccessStatus", true),
        utf8("RiskLevelDuringSignIn", true),
        Field::new("IsInteractive", DataType::Boolean, true),
        utf8("AuthenticationRequirement", true),
        utf8("CorrelationId", true),
        utf8("Type", false),
    ]));
    let batches = batches(NAME, &schema, rows, |c| {
        let users = || c.iter().map(|r| &w.users[r.user]);
        let details: Vec<String> = c.iter().map(|r| r.place.details_json()).collect();
        vec![
            ts_col(c.iter().map(|r| r.ts)),
            str_col(c.iter().map(|_| TENANT_ID)),
            str_col(users().map(|u| u.upn.as_str())),
            opt_col(users().map(|u| Some(u.display.as_str()))),
            str_col(users().map(|u| u.id.as_str())),
            opt_col(c.iter().map(|r| Some(r.app.name))),
            opt_col(c.iter().map(|r| Some(r.app.id))),
            opt_col(c.iter().map(|r| Some(r.ip.as_str()))),
            opt_col(c.iter().map(|r| Some(r.place.country))),
            opt_col(details.iter().map(|d| Some(d.as_str()))),
            str_col(c.iter().map(|r| r.result)),
            opt_col(c.iter().map(|r| result_description(r.result))),
            opt_col(c.iter().map(|r| Some(r.client))),
            opt_col(c.iter().map(|r| Some(r.user_agent))),
            opt_col(c.iter().map(|r| Some(r.device.as_str()))),
            opt_col(c.iter().map(|r| Some(r.ca_status))),
            opt_col(c.iter().map(|r| Some(r.risk))),
            Arc::new(BooleanArray::from_iter(
                c.iter().map(|r| Some(r.interactive)),
            )),
            opt_col(c.iter().map(|r| Some(r.auth))),
            opt_col(c.iter().map(|r| Some(r.correlation.as_str()))),
            str_col(c.iter().map(|_| NAME)),
        ]
    })?;
    Ok(TableData {
        name: NAME,
        description: "Demo: Microsoft Entra ID sign-ins of contoso.com",
        rows: rows.len(),
        batches,
    })
}

fn audit_logs(rows: &[AuditRow]) -> Result<TableData, DemoError> {
    const NAME: &str = "AuditLogs";
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        ts_field(),
        utf8("OperationName", false),
        utf8("Category", true),
        utf8("Result", true),
        utf8("ResultReason", true),
        utf8("ActivityDisplayName", true),
        utf8("LoggedByService", true),
        utf8("InitiatedBy", true),
        utf8("TargetResources", true),
        utf8("CorrelationId", true),
        utf8("Identity", true),
        utf8("Type", false),
    ]));
    let batches = batches(NAME, &schema, rows, |c| {
        vec![
            ts_col(c.iter().map(|r| r.ts)),
            str_col(c.iter().map(|r| r.operation)),
            opt_col(c.iter().map(|r| Some(r.category))),
            opt_col(c.iter().map(|r| Some(r.result))),
            opt_col(c.iter().map(|r| Some(r.result_reason))),
            opt_col(c.iter().map(|r| Some(r.operation))),
            opt_col(c.iter().map(|r| Some(r.service))),
            opt_col(c.iter().map(|r| Some(r.initiated_by.as_str()))),
            opt_col(c.iter().map(|r| Some(r.targets.as_str()))),
            opt_col(c.iter().map(|r| Some(r.correlation.as_str()))),
            opt_col(c.iter().map(|r| Some(r.identity.as_str()))),
            str_col(c.iter().map(|_| NAME)),
        ]
    })?;
    Ok(TableData {
        name: NAME,
        description: "Demo: Microsoft Entra ID directory audit events of contoso.com",
        rows: rows.len(),
        batches,
    })
}

fn security_event(w: &World, rows: &[SecRow]) -> Result<TableData, DemoError> {
    const NAME: &str = "SecurityEvent";
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        ts_field(),
        utf8("Computer", false),
        Field::new("EventID", DataType::Int32, false),
        utf8("Activity", true),
        utf8("Account", true),
        utf8("AccountType", true),
        Field::new("LogonType", DataType::Int32, true),
        utf8("IpAddress", true),
        utf8("WorkstationName", true),
        utf8("TargetUserName", true),
        utf8("TargetDomainName", true),
        utf8("SubjectUserName", true),
        utf8("LogonProcessName", true),
        utf8("AuthenticationPackageName", true),
        utf8("ShareName", true),
        utf8("ObjectName", true),
        utf8("ProcessName", true),
        utf8("CommandLine", true),
        utf8("Status", true),
        utf8("SubStatus", true),
        utf8("Type", false),
    ]));
    let batches = batches(NAME, &schema, rows, |c| {
        vec![
            ts_col(c.iter().map(|r| r.ts)),
            str_col(c.iter().map(|r| w.computers[r.computer].fqdn.as_str())),
            int_col(c.iter().map(|r| Some(r.event_id))),
            opt_col(c.iter().map(|r| Some(activity(r.event_id)))),
            opt_col(c.iter().map(|r| r.account.as_deref())),
            opt_col(c.iter().map(|r| r.account_type)),
            int_col(c.iter().map(|r| r.logon_type)),
            opt_col(c.iter().map(|r| r.ip.as_deref())),
            opt_col(c.iter().map(|r| r.workstation.as_deref())),
            opt_col(c.iter().map(|r| r.target_user.as_deref())),
            opt_col(c.iter().map(|r| r.target_domain)),
            opt_col(c.iter().map(|r| r.subject_user.as_deref())),
            opt_col(c.iter().map(|r| r.logon_process)),
            opt_col(c.iter().map(|r| r.auth_package)),
            opt_col(c.iter().map(|r| r.share)),
            opt_col(c.iter().map(|r| r.object.as_deref())),
            opt_col(c.iter().map(|r| r.process.as_deref())),
            opt_col(c.iter().map(|r| r.command_line.as_deref())),
            opt_col(c.iter().map(|r| r.status)),
            opt_col(c.iter().map(|r| r.sub_status)),
            str_col(c.iter().map(|_| NAME)),
        ]
    })?;
    Ok(TableData {
        name: NAME,
        description: "Demo: Windows security events of contoso.com computers",
        rows: rows.len(),
        batches,
    })
}

fn device_network_events(w: &World, rows: &[NetRow]) -> Result<TableData, DemoError> {
    const NAME: &str = "DeviceNetworkEvents";
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        ts_field(),
        utf8("DeviceId", false),
        utf8("DeviceName", false),
        utf8("ActionType", false),
        utf8("RemoteIP", true),
        Field::new("RemotePort", DataType::Int32, true),
        utf8("RemoteUrl", true),
        utf8("LocalIP", true),
        Field::new("LocalPort", DataType::Int32, true),
        utf8("Protocol", true),
        utf8("InitiatingProcessFileName", true),
        utf8("InitiatingProcessAccountName", true),
        utf8("InitiatingProcessCommandLine", true),
        utf8("Type", false),
    ]));
    let batches = batches(NAME, &schema, rows, |c| {
        let comp = |r: &NetRow| &w.computers[r.computer];
        vec![
            ts_col(c.iter().map(|r| r.ts)),
            str_col(c.iter().map(|r| comp(r).mde_id.as_str())),
            str_col(c.iter().map(|r| comp(r).device_name.as_str())),
            str_col(c.iter().map(|r| r.action)),
            opt_col(c.iter().map(|r| Some(r.remote_ip.as_str()))),
            int_col(c.iter().map(|r| Some(r.remote_port))),
            opt_col(c.iter().map(|r| r.remote_url)),
            opt_col(c.iter().map(|r| Some(comp(r).ip.as_str()))),
            int_col(c.iter().map(|r| Some(r.local_port))),
            opt_col(c.iter().map(|r| Some(r.protocol))),
            opt_col(c.iter().map(|r| Some(r.process))),
            opt_col(c.iter().map(|r| r.account.as_deref())),
            opt_col(c.iter().map(|r| r.command_line.as_deref())),
            str_col(c.iter().map(|_| NAME)),
        ]
    })?;
    Ok(TableData {
        name: NAME,
        description: "Demo: Microsoft Defender for Endpoint network events of contoso.com devices",
        rows: rows.len(),
        batches,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use std::collections::BTreeSet;

    fn small() -> DemoOptions {
        DemoOptions {
            scale: 0.1,
            days: 10,
            ..DemoOptions::default()
        }
    }

    fn dir_url(dir: &std::path::Path) -> Url {
        Url::from_directory_path(dir).expect("absolute temp dir")
    }

    /// All values of a column of the in-memory batches, as strings.
    fn column(table: &TableData, name: &str) -> Vec<Option<String>> {
        let mut out = Vec::new();
        for b in &table.batches {
            let col = b.column_by_name(name).expect("column exists");
            let col = arrow::compute::cast(col, &DataType::Utf8).expect("castable to Utf8");
            let s = col.as_string::<i32>();
            out.extend((0..s.len()).map(|i| s.is_valid(i).then(|| s.value(i).to_string())));
        }
        out
    }

    /// All values of a column as read back from the Delta table.
    async fn read_column(url: &Url, name: &str) -> Vec<Option<String>> {
        let table = deltalake::open_table(url.clone())
            .await
            .expect("table opens");
        let (_, stream) = table.scan_table().with_columns([name]).await.expect("scan");
        let batches = deltalake::operations::collect_sendable_stream(stream)
            .await
            .expect("read");
        let mut out = Vec::new();
        for b in batches {
            let col = arrow::compute::cast(b.column(0), &DataType::Utf8).expect("castable");
            let s = col.as_string::<i32>();
            out.extend((0..s.len()).map(|i| s.is_valid(i).then(|| s.value(i).to_string())));
        }
        out
    }

    /// Order-independent checksum of a column.
    fn checksum(values: &[Option<String>]) -> u64 {
        values.iter().fold(0u64, |acc, v| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in v.as_deref().unwrap_or("\u{0}null").bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
            acc.wrapping_add(h)
        })
    }

    fn table<'a>(tables: &'a [TableData], name: &str) -> &'a TableData {
        tables.iter().find(|t| t.name == name).expect("table built")
    }

    #[test]
    fn demo_rng_is_stable() {
        let mut r = Rng::new(42, 0);
        let first: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        let mut r = Rng::new(42, 0);
        assert_eq!(first, (0..3).map(|_| r.next_u64()).collect::<Vec<_>>());
        assert!((0..1000).all(|_| r.below(7) < 7));
        assert_eq!(r.guid().len(), 36);
    }

    #[test]
    fn demo_incidents_are_planted() {
        let tables = build_tables(&small()).expect("builds");

        // Rows are time-ordered.
        for t in &tables {
            let ts: Vec<i64> = t
                .batches
                .iter()
                .flat_map(|b| {
                    let col = b
                        .column(0)
                        .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
                    col.values().to_vec()
                })
                .collect();
            assert!(
                ts.windows(2).all(|w| w[0] <= w[1]),
                "{} is time-ordered",
                t.name
            );
        }

        let signins = table(&tables, "SigninLogs");
        let ip = column(signins, "IPAddress");
        let upn = column(signins, "UserPrincipalName");
        let result = column(signins, "ResultType");
        let location = column(signins, "Location");
        let ts = column(signins, "TimeGenerated");

        // 1. Password spray.
        let sprayed: Vec<usize> = (0..ip.len())
            .filter(|&i| ip[i].as_deref() == Some(SPRAY_IP))
            .collect();
        let users: BTreeSet<_> = sprayed.iter().map(|&i| upn[i].clone()).collect();
        assert_eq!(users.len(), 60);
        let ok: Vec<_> = sprayed
            .iter()
            .filter(|&&i| result[i].as_deref() == Some("0"))
            .collect();
        assert_eq!(ok.len(), 1);
        assert_eq!(upn[*ok[0]].as_deref(), Some("lynne.robbins@contoso.com"));
        assert!(sprayed
            .iter()
            .all(|&i| matches!(result[i].as_deref(), Some("0" | "50126"))));

        // 2. Brute force then success.
        let brute: Vec<usize> = (0..ip.len())
            .filter(|&i| ip[i].as_deref() == Some(BRUTE_IP))
            .collect();
        assert!(brute
            .iter()
            .all(|&i| upn[i].as_deref() == Some("megan.bowen@contoso.com")));
        let fails = brute
            .iter()
            .filter(|&&i| result[i].as_deref() == Some("50126"))
            .count();
        assert_eq!(fails, 36);
        let first_ok = brute
            .iter()
            .position(|&i| result[i].as_deref() == Some("0"))
            .expect("success");
        assert_eq!(first_ok, 36, "the success comes after all failures");

        // 3. Impossible travel: US then RU 40 minutes later.
        let alex: Vec<usize> = (0..upn.len())
            .filter(|&i| {
                upn[i].as_deref() == Some("alex.wilber@contoso.com")
                    && result[i].as_deref() == Some("0")
            })
            .collect();
        let ru = alex
            .iter()
            .position(|&i| location[i].as_deref() == Some("RU"))
            .expect("RU sign-in");
        assert!(ru > 0);
        assert_eq!(location[alex[ru - 1]].as_deref(), Some("US"));
        assert!(ts[alex[ru - 1]] < ts[alex[ru]]);

        // 4. Lateral movement.
        let sec = table(&tables, "SecurityEvent");
        let computer = column(sec, "Computer");
        let event = column(sec, "EventID");
        let account = column(sec, "Account");
        let logon_type = column(sec, "LogonType");
        let source = column(sec, "IpAddress");
        let svc = Some(r"CONTOSO\svc-sqlbackup".to_string());
        let hops: BTreeSet<_> = (0..event.len())
            .filter(|&i| {
                event[i].as_deref() == Some("4624")
                    && account[i] == svc
                    && source[i].as_deref() == Some("10.10.1.33")
            })
            .map(|i| {
                (
                    computer[i].clone().unwrap_or_default(),
                    logon_type[i].clone().unwrap_or_default(),
                )
            })
            .collect();
        let expected: BTreeSet<_> = [
            ("SRV-APP01.contoso.com", "3"),
            ("SRV-SQL01.contoso.com", "3"),
            ("SRV-WEB01.contoso.com", "3"),
            ("DC01.contoso.com", "3"),
            ("SRV-APP02.contoso.com", "10"),
        ]
        .iter()
        .map(|(c, t)| (c.to_string(), t.to_string()))
        .collect();
        assert_eq!(hops, expected);
        assert!((0..event.len()).any(|i| event[i].as_deref() == Some("4648")
            && computer[i].as_deref() == Some("WKS-1023.contoso.com")
            && column(sec, "TargetUserName")[i].as_deref() == Some("svc-sqlbackup")));

        // 5. Finance share: joni.sherman never touched it before the incident.
        let share = column(sec, "ShareName");
        let object = column(sec, "ObjectName");
        let sec_ts = column(sec, "TimeGenerated");
        let joni = Some(r"CONTOSO\joni.sherman".to_string());
        let finance: Vec<usize> = (0..share.len())
            .filter(|&i| share[i].as_deref() == Some(r"\\*\Finance"))
            .collect();
        let joni_rows: Vec<usize> = finance
            .iter()
            .copied()
            .filter(|&i| account[i] == joni)
            .collect();
        let files: BTreeSet<_> = joni_rows
            .iter()
            .filter(|&&i| event[i].as_deref() == Some("5145"))
            .map(|&i| object[i].clone())
            .collect();
        assert_eq!(files.len(), 135);
        assert_eq!(finance_files().len(), 135);
        let first_joni = joni_rows
            .iter()
            .map(|&i| sec_ts[i].clone())
            .min()
            .expect("joni rows");
        assert!(joni_rows
            .iter()
            .all(|&i| computer[i].as_deref() == Some("FS01.contoso.com")));
        assert!(first_joni >= sec_ts[*finance.first().expect("finance rows")]);
        let others: BTreeSet<_> = finance
            .iter()
            .filter(|&&i| account[i] != joni)
            .map(|&i| account[i].clone())
            .collect();
        assert!(!others.is_empty(), "finance people use the share normally");

        // Network side of the lateral movement.
        let net = table(&tables, "DeviceNetworkEvents");
        let device = column(net, "DeviceName");
        let remote = column(net, "RemoteIP");
        let port = column(net, "RemotePort");
        let process = column(net, "InitiatingProcessFileName");
        let smb: BTreeSet<_> = (0..device.len())
            .filter(|&i| {
                device[i].as_deref() == Some("wks-1023.contoso.com")
                    && process[i].as_deref() == Some("powershell.exe")
                    && port[i].as_deref() == Some("445")
            })
            .map(|i| remote[i].clone().unwrap_or_default())
            .collect();
        assert_eq!(smb.len(), 4);
        assert!(
            (0..device.len()).any(|i| device[i].as_deref() == Some("srv-app02.contoso.com")
                && column(net, "ActionType")[i].as_deref() == Some("InboundConnectionAccepted")
                && remote[i].as_deref() == Some("10.10.1.33"))
        );

        // MFA registration after the brute force.
        let audit = table(&tables, "AuditLogs");
        let op = column(audit, "OperationName");
        let init = column(audit, "InitiatedBy");
        assert!((0..op.len()).any(
            |i| op[i].as_deref() == Some("User registered security info")
                && init[i]
                    .as_deref()
                    .is_some_and(|s| s.contains(BRUTE_IP) && s.contains("megan.bowen"))
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn demo_writes_delta_tables_deterministically() {
        let opts = small();
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        // The workspace folder does not exist yet: generate must create it.
        let url_a = dir_url(&a.path().join("demo"));
        // No trailing slash on this one: tables still go inside the folder.
        let url_b = Url::from_file_path(b.path().join("demo")).expect("absolute temp dir");
        let none = HashMap::new();
        let sa = generate(&url_a, &none, &opts).await.expect("generate a");
        let sb = generate(&url_b, &none, &opts).await.expect("generate b");
        assert_eq!(sa, sb);
        let names: Vec<&str> = sa.tables.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "IdentityInfo",
                "SigninLogs",
                "AuditLogs",
                "SecurityEvent",
                "DeviceNetworkEvents"
            ]
        );

        for (name, rows) in &sa.tables {
            assert!(*rows > 0, "{name} has rows");
            let url = table_url(&url_a, name).expect("table url");
            let t = deltalake::open_table(url.clone()).await.expect("re-opens");
            assert_eq!(t.version(), Some(0), "{name} is one commit");
            let ts = read_column(&url, "TimeGenerated").await;
            assert_eq!(ts.len(), *rows, "{name} row count");
        }

        for (name, col) in [
            ("SigninLogs", "CorrelationId"),
            ("SecurityEvent", "CommandLine"),
            ("DeviceNetworkEvents", "LocalPort"),
        ] {
            let ca = read_column(&table_url(&url_a, name).expect("url"), col).await;
            let cb = read_column(&table_url(&url_b, name).expect("url"), col).await;
            assert_eq!(
                checksum(&ca),
                checksum(&cb),
                "{name}.{col} is deterministic"
            );
        }

        // The spray, as read back from the lake.
        let url = table_url(&url_a, "SigninLogs").expect("url");
        let ip = read_column(&url, "IPAddress").await;
        let upn = read_column(&url, "UserPrincipalName").await;
        let users: BTreeSet<_> = (0..ip.len())
            .filter(|&i| ip[i].as_deref() == Some(SPRAY_IP))
            .map(|i| upn[i].clone())
            .collect();
        assert!(users.len() >= 40, "spray hits {} users", users.len());

        // A different seed changes the data; regenerating overwrites in one more commit.
        let other = generate(
            &url_a,
            &none,
            &DemoOptions {
                seed: 7,
                ..opts.clone()
            },
        )
        .await
        .expect("regenerate");
        assert_ne!(other, sa);
        let t = deltalake::open_table(table_url(&url_a, "SigninLogs").expect("url"))
            .await
            .expect("opens");
        assert_eq!(t.version(), Some(1));
        let rows = read_column(
            &table_url(&url_a, "SigninLogs").expect("url"),
            "TimeGenerated",
        )
        .await;
        assert_eq!(rows.len(), other.tables[1].1);
    }

    #[test]
    fn demo_rejects_bad_options() {
        assert!(validate(&DemoOptions {
            days: 0,
            ..DemoOptions::default()
        })
        .is_err());
        assert!(validate(&DemoOptions {
            scale: f64::NAN,
            ..DemoOptions::default()
        })
        .is_err());
        assert!(validate(&DemoOptions {
            scale: 0.0,
            ..DemoOptions::default()
        })
        .is_err());
        assert!(validate(&DemoOptions::default()).is_ok());
        // Very short windows still hold every incident.
        let tables = build_tables(&DemoOptions { days: 1, ..small() }).expect("builds");
        let ip = column(table(&tables, "SigninLogs"), "IPAddress");
        assert!(ip.iter().any(|i| i.as_deref() == Some(SPRAY_IP)));
        assert!(ip.iter().any(|i| i.as_deref() == Some(TRAVEL_IP)));
    }

    /// Default size: row counts and wall time of the whole generate() (debug build).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn demo_default_scale_size_and_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = dir_url(dir.path());
        let started = std::time::Instant::now();
        let summary = generate(&url, &HashMap::new(), &DemoOptions::default())
            .await
            .expect("generate");
        let elapsed = started.elapsed();
        let total: usize = summary.tables.iter().map(|(_, n)| n).sum();
        eprintln!("demo default scale: {summary:?}, total {total} rows in {elapsed:?}");
        assert!((100_000..=300_000).contains(&total), "total rows {total}");
    }
}
