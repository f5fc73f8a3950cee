#!/usr/bin/env bash
# Entry point of the build: checks for the .NET 10 SDK, builds the task host in build/ when its sources
# changed, then hands it every argument. ./build.sh --help lists the targets.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

sdk_help() {
  local distro="debian" version="12"
  if [ -r /etc/os-release ]; then
    distro="$(. /etc/os-release && echo "${ID:-debian}")"
    version="$(. /etc/os-release && echo "${VERSION_ID:-12}")"
  fi
  cat >&2 <<HELP
build.sh: $1
This repository needs the .NET 10 SDK. On Debian/Ubuntu, install it from Microsoft's package feed:

  wget https://packages.microsoft.com/config/$distro/$version/packages-microsoft-prod.deb -O /tmp/packages-microsoft-prod.deb
  sudo dpkg -i /tmp/packages-microsoft-prod.deb
  sudo apt-get update && sudo apt-get install -y dotnet-sdk-10.0

(On Ubuntu, 'sudo apt-get install -y dotnet-sdk-10.0' may work from Ubuntu's own archive without the feed.)
Or, without root, with Microsoft's install script (into ~/.dotnet, where build.sh also looks):

  curl -sSL https://dot.net/v1/dotnet-install.sh | bash -s -- --channel 10.0
HELP
}

if ! command -v dotnet >/dev/null 2>&1; then
  if [ -x "$HOME/.dotnet/dotnet" ]; then
    export DOTNET_ROOT="$HOME/.dotnet" PATH="$HOME/.dotnet:$PATH"
  else
    sdk_help "dotnet was not found on PATH."
    exit 1
  fi
fi
if ! dotnet --list-sdks 2>/dev/null | grep -q '^10\.'; then
  sdk_help "no .NET 10 SDK found (dotnet --list-sdks: $(dotnet --list-sdks 2>/dev/null | cut -d' ' -f1 | tr '\n' ' '))"
  exit 1
fi

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

# Rebuilding only when something under build/ (or a props file it imports) is newer than the host
# saves the few seconds even an up-to-date MSBuild run costs.
host=build/bin/Release/net10.0/build.dll
if [ ! -f "$host" ] || [ -n "$(find build Directory.Build.props Directory.Packages.props \
     \( -path build/bin -o -path build/obj \) -prune -o -newer "$host" -print -quit 2>/dev/null)" ]; then
  log="$(mktemp)"
  if ! dotnet build build/Build.csproj -c Release -nologo -v q >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "build.sh: building the task host (build/Build.csproj) failed; its output is above." >&2
    exit 1
  fi
  rm -f "$log"
  # MSBuild leaves an up-to-date dll untouched; touching it keeps the check above from rebuilding every time.
  touch "$host"
fi
exec dotnet "$host" "$@"
