//! Catalogues the simulation picks from: cloud applications, user agents and sign-in
//! results, Windows event names, the processes people and servers run, the endpoints they
//! talk to, and the file shares with their files.

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum AppKind {
    Desktop,
    Browser,
    Mobile,
}

pub(crate) struct App {
    pub(crate) name: &'static str,
    pub(crate) id: &'static str,
    pub(crate) kind: AppKind,
    pub(crate) weight: u32,
    pub(crate) technical: bool,
}

pub(crate) static APPS: [App; 8] = [
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
pub(crate) const APP_EXCHANGE: usize = 0;
pub(crate) const APP_TEAMS: usize = 1;
pub(crate) const APP_SHAREPOINT: usize = 2;
pub(crate) const APP_OFFICEHOME: usize = 3;

pub(crate) static APP_OUTLOOK_MOBILE: App = App {
    name: "Outlook Mobile",
    id: "27922004-5251-4030-b22d-91ecd9a37ea4",
    kind: AppKind::Mobile,
    weight: 0,
    technical: false,
};
pub(crate) static APP_MY_SIGNINS: App = App {
    name: "My Signins",
    id: "19db86c3-b2b9-44cc-b339-36da233a3be2",
    kind: AppKind::Browser,
    weight: 0,
    technical: false,
};

pub(crate) const UA_EDGE: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0";
pub(crate) const UA_CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36";
pub(crate) const UA_FIREFOX: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0";
pub(crate) const UA_DESKTOP: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; WebView/3.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.102 Safari/537.36 Edge/18.19045";
pub(crate) const UA_IOS: &str =
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148";
pub(crate) const UA_ANDROID: &str = "Mozilla/5.0 (Linux; Android 14; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36";
pub(crate) const UA_ROPC: &str = "BAV2ROPC";

pub(crate) const CLIENT_BROWSER: &str = "Browser";
pub(crate) const CLIENT_MODERN: &str = "Mobile Apps and Desktop clients";
pub(crate) const CLIENT_OTHER: &str = "Other clients";

pub(crate) const MFA: &str = "multiFactorAuthentication";
pub(crate) const SFA: &str = "singleFactorAuthentication";

pub(crate) fn result_description(code: &str) -> Option<&'static str> {
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

pub(crate) fn activity(event_id: i32) -> &'static str {
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
pub(crate) static USER_PROCESSES: [(&str, &str); 10] = [
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

pub(crate) static STARTUP_PROCESSES: [(&str, &str); 4] = [
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

pub(crate) static ENGINEER_PROCESSES: [(&str, &str); 4] = [
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

pub(crate) static ADMIN_PROCESSES: [(&str, &str); 5] = [
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

pub(crate) static SERVER_PROCESSES: [(&str, &str); 6] = [
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

pub(crate) struct Endpoint {
    pub(crate) url: &'static str,
    pub(crate) ip: &'static str,
    pub(crate) port: i32,
    pub(crate) process: &'static str,
    pub(crate) cmd: &'static str,
    /// `None`: runs as the signed-in user.
    pub(crate) account: Option<&'static str>,
    pub(crate) weight: u32,
}

pub(crate) const EDGE_NET_CMD: &str = r#""msedge.exe" --type=utility --utility-sub-type=network.mojom.NetworkService --lang=en-US --service-sandbox-type=none"#;

pub(crate) static USER_ENDPOINTS: [Endpoint; 10] = [
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

pub(crate) static SYSTEM_ENDPOINTS: [Endpoint; 3] = [
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

pub(crate) const SHARE_FINANCE: &str = r"\\*\Finance";
pub(crate) const SHARE_SHARED: &str = r"\\*\Shared";
pub(crate) const SHARE_USERS: &str = r"\\*\Users";

pub(crate) fn department_share(dept: &str) -> &'static str {
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

pub(crate) static SHARED_FILES: [&str; 8] = [
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
pub(crate) fn finance_files() -> Vec<String> {
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
