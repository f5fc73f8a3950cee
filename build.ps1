#!/usr/bin/env pwsh
# PowerShell twin of build.sh: checks for the .NET 10 SDK, builds the task host in build/, then runs it.
# ./build.ps1 -Target Test -Exclusive is ./build.sh --target=Test --exclusive; any other option
# (--configuration=Debug, --filter=EXPR) is passed on unchanged. PowerShell swallows the first bare --,
# so arguments for the program a target runs go after two: ./build.ps1 -Target Bench -- -- --repeats 1
[CmdletBinding(PositionalBinding = $false)]
param(
    [string]$Target = "Build",
    [switch]$Exclusive,
    [switch]$Tree,
    [Parameter(ValueFromRemainingArguments = $true)]
    [string[]]$Rest = @()
)

# No $ErrorActionPreference = 'Stop': Windows PowerShell turns a native program's stderr lines into
# terminating errors under it. Every native call below is checked through $LASTEXITCODE instead.
Set-StrictMode -Version Latest

function Write-SdkHelp([string]$Reason) {
    [Console]::Error.WriteLine(@"
build.ps1: $Reason
This repository needs the .NET 10 SDK:
  Windows:        winget install Microsoft.DotNet.SDK.10
  Debian/Ubuntu:  see ./build.sh (Microsoft's packages-microsoft-prod.deb, then apt-get install -y dotnet-sdk-10.0)
  Anywhere:       https://dot.net/v1/dotnet-install.ps1 -Channel 10.0 (installs into ~/.dotnet without admin rights)
"@)
}

if (-not (Get-Command dotnet -ErrorAction SilentlyContinue)) {
    Write-SdkHelp "dotnet was not found on PATH."
    exit 1
}
$sdks = @(& dotnet --list-sdks 2>$null)
if (-not ($sdks | Where-Object { $_ -match '^10\.' })) {
    Write-SdkHelp "no .NET 10 SDK found (dotnet --list-sdks: $($sdks -join '; '))."
    exit 1
}

$env:DOTNET_CLI_TELEMETRY_OPTOUT = '1'
$env:DOTNET_NOLOGO = '1'

# The host's own build stays out of sight unless it fails.
$project = Join-Path $PSScriptRoot 'build/Build.csproj'
$buildOutput = & dotnet build $project -c Release -nologo -v q 2>&1
if ($LASTEXITCODE -ne 0) {
    $buildOutput | ForEach-Object { [Console]::Error.WriteLine("$_") }
    [Console]::Error.WriteLine("build.ps1: building the task host (build/Build.csproj) failed; its output is above.")
    exit 1
}

$hostArguments = @()
# Only an explicit -Target is passed on: the host's default is also Build, and "-Tree" alone should
# print every target's graph, not just Build's.
if ($PSBoundParameters.ContainsKey('Target')) { $hostArguments += "--target=$Target" }
if ($Exclusive) { $hostArguments += '--exclusive' }
if ($Tree) { $hostArguments += '--tree' }
$hostArguments += $Rest

& dotnet (Join-Path $PSScriptRoot 'build/bin/Release/net10.0/build.dll') @hostArguments
exit $LASTEXITCODE
