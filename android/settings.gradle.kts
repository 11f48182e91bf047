// Gradle build of the Tchap Secure Android library (AAR). Built on a workstation with the
// Android SDK and NDK; see README.md. The Rust workspace is the parent directory.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "tchap-secure-android"
